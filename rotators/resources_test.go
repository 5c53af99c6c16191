package rotators

import (
	"errors"
	"io"
	"sync"
	"testing"
	"time"
)

// closer counts its Close calls.
type closer struct {
	mu     sync.Mutex
	closed int
}

func (c *closer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed++
	return nil
}

func (c *closer) closes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// opener returns an open function that hands out c and counts its calls.
func opener(c *closer, calls *int) func() (io.Closer, error) {
	return func() (io.Closer, error) { *calls++; return c, nil }
}

func TestResourcesUseOpensOncePerKey(t *testing.T) {
	r := NewResources()
	a, b := &closer{}, &closer{}
	var opensA, opensB int
	got1, rel1, err := r.Use("a", opener(a, &opensA))
	if err != nil || got1 != a {
		t.Fatalf("Use(a) = %v, %v", got1, err)
	}
	got2, rel2, err := r.Use("a", opener(&closer{}, &opensA))
	if err != nil || got2 != a {
		t.Fatalf("second Use(a) = %v, %v: the open resource is not shared", got2, err)
	}
	if _, relB, err := r.Use("b", opener(b, &opensB)); err != nil {
		t.Fatal(err)
	} else {
		relB()
	}
	if opensA != 1 || opensB != 1 || r.Len() != 2 {
		t.Fatalf("opens a=%d b=%d, Len %d; want one open per key", opensA, opensB, r.Len())
	}
	rel1()
	rel2()
	if a.closes() != 0 || b.closes() != 0 {
		t.Fatal("release closed a resource")
	}
}

func TestResourcesOpenErrorIsNotKept(t *testing.T) {
	r := NewResources()
	boom := errors.New("boom")
	if _, _, err := r.Use("k", func() (io.Closer, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Use with a failing open = %v", err)
	}
	if r.Len() != 0 {
		t.Fatal("a failed open left an entry")
	}
	c := &closer{}
	var opens int
	if got, rel, err := r.Use("k", opener(c, &opens)); err != nil || got != c {
		t.Fatalf("Use after a failed open = %v, %v", got, err)
	} else {
		rel()
	}
}

func TestResourcesCloseIdle(t *testing.T) {
	r := NewResources()
	busy, idle := &closer{}, &closer{}
	var opens int
	_, releaseBusy, _ := r.Use("busy", opener(busy, &opens))
	_, releaseIdle, _ := r.Use("idle", opener(idle, &opens))
	releaseIdle()
	releaseIdle() // a second release is a no-op (counted twice, users would go negative and never look idle)

	r.CloseIdle(time.Hour)
	if idle.closes() != 0 || r.Len() != 2 {
		t.Fatal("CloseIdle closed a resource used more recently than its idle time")
	}

	time.Sleep(20 * time.Millisecond)
	r.CloseIdle(time.Millisecond)
	if idle.closes() != 1 {
		t.Fatalf("idle resource closed %d times, want 1", idle.closes())
	}
	if busy.closes() != 0 {
		t.Fatal("CloseIdle closed a resource in use")
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d after closing the idle one, want 1", r.Len())
	}

	// Released, it becomes idle in its turn.
	releaseBusy()
	time.Sleep(20 * time.Millisecond)
	r.CloseIdle(time.Millisecond)
	if busy.closes() != 1 || r.Len() != 0 {
		t.Fatalf("after release: closed %d, Len %d", busy.closes(), r.Len())
	}

	// A closed key opens anew.
	fresh := &closer{}
	if got, rel, err := r.Use("idle", opener(fresh, &opens)); err != nil || got != fresh {
		t.Fatalf("Use after CloseIdle = %v, %v; want a newly opened resource", got, err)
	} else {
		rel()
	}
}

func TestResourcesClose(t *testing.T) {
	r := NewResources()
	inUse, idle := &closer{}, &closer{}
	var opens int
	_, release, _ := r.Use("in-use", opener(inUse, &opens))
	_, rel, _ := r.Use("idle", opener(idle, &opens))
	rel()

	r.Close()
	if inUse.closes() != 1 || idle.closes() != 1 || r.Len() != 0 {
		t.Fatalf("Close: in-use closed %d, idle closed %d, Len %d; want everything closed once", inUse.closes(), idle.closes(), r.Len())
	}
	release() // a release after Close is harmless

	opened := false
	_, _, err := r.Use("idle", func() (io.Closer, error) { opened = true; return &closer{}, nil })
	if !errors.Is(err, ErrClosed) || opened {
		t.Fatalf("Use after Close = %v (opened %v), want ErrClosed without opening", err, opened)
	}
	r.Close() // idempotent
	r.CloseIdle(0)
	if inUse.closes() != 1 || idle.closes() != 1 {
		t.Fatal("a second Close closed again")
	}
}
