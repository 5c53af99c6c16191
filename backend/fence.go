package backend

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// ErrNotWritable answers a creds read on a node whose storage writes fail: a Vault node that lost
// the raft leadership may go on calling itself active for a while (seen: over 90 s after a frozen
// leader resumed), answering reads from its own, stale copy of storage, where the current value
// may be one the new active node has already replaced (docs/decisions.md, "A thawed former
// leader"). The API answers 503; a client retries, or reaches the active node.
var ErrNotWritable = errors.New("this Vault node cannot write to its storage (it may have lost the leadership), so the credential it holds may be stale; retry")

// fenceProbeKey is written to learn whether this node's writes succeed.
const fenceProbeKey = "fence-probe"

// probeEvery is how long a successful write vouches for this node: a creds read after a longer
// quiet writes once to learn whether the node still may (one small write a second at most).
const probeEvery = time.Second

// probeTimeout bounds a probe write: a node that cannot write within it is not handing out values.
const probeTimeout = 5 * time.Second

// writeFence remembers when this node's writes of the engine's own records last succeeded.
type writeFence struct {
	mu       sync.Mutex
	ok       time.Time  // last successful write
	failing  bool       // the last write failed
	failedAt time.Time  // when a write or probe last failed
	probe    *probeCall // the probe write in flight, if any
}

// probeCall is one probe write; done closes once ok says how it went.
type probeCall struct {
	done chan struct{}
	ok   bool
}

// fencedKey says whether a write to key tells about this node's standing: the protocol's and the
// role's records. Job records and history entries are left out: one too large for storage says
// nothing about leadership.
func fencedKey(key string) bool {
	for _, p := range []string{rolePrefix, statePrefix, pendingPrefix} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return key == configPath || key == fenceProbeKey
}

// heard records the result of a write to key. A read-only node (a performance standby, a DR
// secondary) refuses every write by design, and Vault forwards such requests: not a fence.
func (w *writeFence) heard(key string, err error) {
	if !fencedKey(key) || errors.Is(err, logical.ErrReadOnly) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failing = err != nil
	if err == nil {
		w.ok = time.Now()
	} else {
		w.failedAt = time.Now()
	}
}

func (w *writeFence) isFailing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.failing
}

// writable reports whether this node may hand out values: a write of its records succeeded less
// than probeEvery ago, or a probe write succeeds now. One probe at a time: reads meanwhile wait
// for its answer (no longer than their own deadline) instead of each writing; after a failure,
// reads are refused at once for probeEvery. Nodes that never write
// (performance standbys) always may: their reads are what Vault replicates to them.
func (e *Engine) writable(ctx context.Context) bool {
	w := &e.writes
	w.mu.Lock()
	if !w.failing && time.Since(w.ok) < probeEvery {
		w.mu.Unlock()
		return true // the common case: no call to Vault (writeSafe asks it over gRPC)
	}
	w.mu.Unlock()
	if !e.writeSafe() {
		return true
	}
	w.mu.Lock()
	if p := w.probe; p != nil {
		// Someone is asking: wait for that answer (as long as this request may).
		w.mu.Unlock()
		select {
		case <-p.done:
			return p.ok
		case <-ctx.Done():
			return false
		}
	}
	if w.failing && time.Since(w.failedAt) < probeEvery {
		w.mu.Unlock()
		return false // just asked, and refused
	}
	p := &probeCall{done: make(chan struct{})}
	w.probe = p
	w.mu.Unlock()

	// Past the engine's storage wrapper, whose hook takes w.mu; bounded by probeTimeout whatever
	// the caller's deadline, since others wait for this answer.
	st := e.storage
	if es, ok := st.(engineStorage); ok {
		st = es.Storage
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), probeTimeout)
	defer cancel()
	err := st.Put(pctx, &logical.StorageEntry{Key: fenceProbeKey, Value: []byte(fmt.Sprint(time.Now().UnixNano()))})

	w.mu.Lock()
	switch {
	case err == nil:
		w.failing, w.ok = false, time.Now()
		p.ok = true
	case errors.Is(err, logical.ErrReadOnly):
		p.ok = true
	default:
		w.failing, w.failedAt = true, time.Now()
	}
	w.probe = nil
	w.mu.Unlock()
	close(p.done)
	return p.ok
}
