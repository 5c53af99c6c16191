package backend

import (
	"context"
	"sync"
)

// job is one piece of background work for a role.
type job struct {
	name    string
	recover bool // resolve a pending record instead of rotating
}

// workerPool runs background jobs on a bounded number of goroutines. Submitting never blocks:
// jobs wait in a FIFO, each (role, kind) at most once, so the tick stays O(due roles).
type workerPool struct {
	run func(context.Context, job)

	mu      sync.Mutex
	cond    *sync.Cond
	fifo    []job
	queued  map[job]bool
	workers int
	target  int
	closed  bool
	ctx     context.Context
	wg      sync.WaitGroup
}

func newWorkerPool(ctx context.Context, run func(context.Context, job)) *workerPool {
	p := &workerPool{run: run, queued: map[job]bool{}, ctx: ctx}
	p.cond = sync.NewCond(&p.mu)
	return p
}

// resize sets how many jobs may run at once.
func (p *workerPool) resize(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.target = n
	for p.workers < p.target {
		p.workers++
		p.wg.Add(1)
		go p.loop()
	}
	p.cond.Broadcast() // surplus workers see target and leave
}

// submit queues a job unless the same job is already waiting.
func (p *workerPool) submit(j job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.queued[j] {
		return
	}
	p.queued[j] = true
	p.fifo = append(p.fifo, j)
	p.cond.Signal()
}

// waiting returns how many jobs have not started yet.
func (p *workerPool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fifo)
}

func (p *workerPool) loop() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for len(p.fifo) == 0 && !p.closed && p.workers <= p.target {
			p.cond.Wait()
		}
		if p.closed || p.workers > p.target {
			p.workers--
			p.mu.Unlock()
			return
		}
		j := p.fifo[0]
		p.fifo[0] = job{}
		p.fifo = p.fifo[1:]
		delete(p.queued, j)
		p.mu.Unlock()
		p.run(p.ctx, j)
	}
}

// close stops taking jobs and waits for running ones; the caller cancels their context first.
func (p *workerPool) close() {
	p.mu.Lock()
	p.closed = true
	p.fifo = nil
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}
