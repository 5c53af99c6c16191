package backend

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// ErrNotWritable answers a creds read on a node whose storage writes fail: a Vault node that lost
// the raft leadership may go on calling itself active for a while (seen: over 90 s after a frozen
// leader resumed), answering reads from its own, stale copy of storage, where the current value
// may be one the new active node has already replaced (docs/decisions.md, "Vault HA"). The API
// answers 503; a client retries, or reaches the active node.
var ErrNotWritable = errors.New("this Vault node cannot write to its storage (it may have lost the leadership), so the credential it holds may be stale; retry")

// fenceProbeKey is written to learn whether this node's writes succeed again.
const fenceProbeKey = "fence-probe"

// probeEvery bounds the probe writes of creds reads while writes fail.
const probeEvery = time.Second

// writeFence remembers whether this node's last storage write failed.
type writeFence struct {
	mu        sync.Mutex
	failing   bool
	lastProbe time.Time
}

// heard records the result of a write.
func (w *writeFence) heard(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failing = err != nil
}

// writable reports whether this node may hand out values: its writes succeed, or a probe write
// (at most one per probeEvery) now does.
func (e *Engine) writable(ctx context.Context) bool {
	w := &e.writes
	w.mu.Lock()
	if !w.failing {
		w.mu.Unlock()
		return true
	}
	if time.Since(w.lastProbe) < probeEvery {
		w.mu.Unlock()
		return false
	}
	w.lastProbe = time.Now()
	w.mu.Unlock()
	err := e.storage.Put(ctx, &logical.StorageEntry{Key: fenceProbeKey, Value: []byte(e.now().Format(time.RFC3339Nano))})
	return err == nil
}
