package backend

import (
	"container/heap"
	"sync"
	"time"
)

// dueQueue is the in-memory schedule: a min-heap of next-due times with one entry per role, so
// that a tick costs O(due roles · log n) however many roles exist.
type dueQueue struct {
	mu    sync.Mutex
	items dueHeap
	index map[string]*dueItem
	// changed, when set, is called (outside the lock) after every change of the queue.
	changed func()
}

type dueItem struct {
	name string
	due  time.Time
	pos  int
}

func newDueQueue() *dueQueue { return &dueQueue{index: map[string]*dueItem{}} }

// set schedules name at due; a zero due removes it.
func (q *dueQueue) set(name string, due time.Time) {
	q.setLocked(name, due)
	if q.changed != nil {
		q.changed()
	}
}

func (q *dueQueue) setLocked(name string, due time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it, ok := q.index[name]; ok {
		if due.IsZero() {
			heap.Remove(&q.items, it.pos)
			delete(q.index, name)
			return
		}
		it.due = due
		heap.Fix(&q.items, it.pos)
		return
	}
	if due.IsZero() {
		return
	}
	it := &dueItem{name: name, due: due}
	heap.Push(&q.items, it)
	q.index[name] = it
}

// popDue removes and returns every role due at or before now, earliest first.
func (q *dueQueue) popDue(now time.Time) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var due []string
	for len(q.items) > 0 && !q.items[0].due.After(now) {
		it := heap.Pop(&q.items).(*dueItem)
		delete(q.index, it.name)
		due = append(due, it.name)
	}
	return due
}

// earliest is the first due time in the queue.
func (q *dueQueue) earliest() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return time.Time{}, false
	}
	return q.items[0].due, true
}

func (q *dueQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

type dueHeap []*dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *dueHeap) Push(x interface{}) {
	it := x.(*dueItem)
	it.pos = len(*h)
	*h = append(*h, it)
}
func (h *dueHeap) Pop() interface{} {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}
