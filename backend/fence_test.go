package backend

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// deposedStorage is the storage of an engine whose node lost the raft leadership: once deposed,
// every write fails (a deposed leader cannot commit), reads still answer from its stale copy.
type deposedStorage struct {
	logical.Storage
	deposed atomic.Bool
}

var errDeposed = errors.New("node is not the leader")

func (d *deposedStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if d.deposed.Load() {
		return errDeposed
	}
	return d.Storage.Put(ctx, e)
}

func (d *deposedStorage) Delete(ctx context.Context, key string) error {
	if d.deposed.Load() {
		return errDeposed
	}
	return d.Storage.Delete(ctx, key)
}

// TestDeposedEngineNeverRestores is the frozen leader of a raft cluster: its rotation applied the
// new value, then its node lost the leadership; the new active node's engine (over the same
// storage) resolved the record and rotated again; then the old engine goes on, finds its value
// rejected, and must not put its old value back (that would kill the value Vault now holds).
func TestDeposedEngineNeverRestores(t *testing.T) {
	inner := &logical.InmemStorage{}
	old := &deposedStorage{Storage: inner}
	clock := newClock(t0)
	e1, ft := engineOver(t, old, clock, "f", "pw-fence-old")
	ctx := context.Background()

	gate := make(chan struct{})
	ft.SetVerifyGate(gate)
	done := make(chan *Outcome, 1)
	go func() {
		out, err := e1.Rotate(ctx, "f")
		if err != nil {
			t.Error(err)
		}
		done <- out
	}()
	eventually(t, "the old leader applied its change", func() bool { return ft.Applies() == 1 })
	// The old leader is deposed while it waits to verify; the new leader takes over.
	old.deposed.Store(true)
	ft.SetVerifyGate(nil) // the gate holds only the old leader's Verify
	e2 := New(&logical.BackendConfig{StorageView: inner, System: &logical.StaticSystemView{}})
	e2.SetClock(clock)
	if err := e2.Initialize(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e2.Close)
	out2, err := e2.Rotate(ctx, "f") // resolves the record (rolls it forward), then rotates again
	if err != nil || !out2.Success || out2.NewVersion != 3 {
		t.Fatalf("the new leader's rotation: %+v, %v", out2, err)
	}
	live := ft.Live()

	close(gate)
	var out *Outcome
	select {
	case out = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the old leader's rotation did not end")
	}
	if out.Success || out.RolledBack || out.Result != OutcomeUnresolved {
		t.Fatalf("the deposed engine's outcome: %+v", out)
	}
	if !strings.Contains(stepErrors(out.Steps), "not put back") {
		t.Fatalf("steps: %+v", out.Steps)
	}
	if n := ft.Applies(); n != 2 {
		t.Fatalf("%d changes at the target, want 2 (old leader's apply, new leader's rotation): the deposed engine restored", n)
	}
	if !ft.Live().Equal(live) {
		t.Fatal("the target no longer holds the value the new leader promoted")
	}
	st, err := e2.loadState(ctx, "f")
	if err != nil || st.Current().Number != 3 || !st.Current().Secret.Equal(live) {
		t.Fatalf("state after the deposed engine went on: %+v, %v", st, err)
	}
	if p, _ := e2.loadPending(ctx, "f"); p != nil {
		t.Fatalf("a pending record appeared: %+v", p)
	}
}

// Recovery of a restoring record stores it again before it puts anything back: an engine that
// cannot write leaves the target alone.
func TestRestoreRecoveryIsFenced(t *testing.T) {
	inner := &logical.InmemStorage{}
	st := &deposedStorage{Storage: inner}
	clock := newClock(t0)
	e, ft := engineOver(t, st, clock, "r", "pw-fence-r-old")
	ctx := context.Background()
	newV := secretOf("pw-fence-r-new")
	ft.SetLive(newV)
	p := &Pending{Old: secretOf("pw-fence-r-old"), New: newV, OldVersion: 1, NewVersion: 2, Trigger: TriggerManual,
		Phase: PhaseRestoring, Started: clock.Now()}
	if err := putJSON(ctx, inner, pendingPrefix+"r", p); err != nil {
		t.Fatal(err)
	}
	e.pending.add("r")
	st.deposed.Store(true)
	e.recoverRole(ctx, "r")
	if n := ft.Applies(); n != 0 || !ft.Live().Equal(newV) {
		t.Fatalf("a deposed engine's recovery changed the target (%d applies)", n)
	}
	st.deposed.Store(false)
	e.recoverRole(ctx, "r")
	if ft.Applies() != 1 || !ft.Live().Equal(secretOf("pw-fence-r-old")) {
		t.Fatalf("recovery with storage back did not restore (%d applies)", ft.Applies())
	}
}

// TestCredsRefusedWhileWritesFail: once a write of this node fails (a deposed leader), creds
// answers ErrNotWritable rather than the value of its stale copy, until a probe write succeeds.
func TestCredsRefusedWhileWritesFail(t *testing.T) {
	st := &deposedStorage{Storage: &logical.InmemStorage{}}
	clock := newClock(t0)
	e, _ := engineOver(t, st, clock, "c", "pw-creds-old")
	ctx := context.Background()
	if _, _, _, err := e.Creds(ctx, "c", 0); err != nil {
		t.Fatal(err)
	}
	st.deposed.Store(true)
	if _, err := e.Rotate(ctx, "c"); err == nil {
		t.Log("the rotation reported no error; its writes failed")
	}
	for _, n := range []int{0, 1} {
		if _, _, _, err := e.Creds(ctx, "c", n); !errors.Is(err, ErrNotWritable) {
			t.Fatalf("creds version %d on a node whose writes fail = %v, want ErrNotWritable", n, err)
		}
	}
	st.deposed.Store(false) // leadership back (or a restart): the next probe clears the fence
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, _, err := e.Creds(ctx, "c", 0)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotWritable) || time.Now().After(deadline) {
			t.Fatalf("creds after writes work again = %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCredsOfAnIdleDeposedNode: a node that lost the leadership while idle has no failed write
// to go by; once its last successful write is older than probeEvery, creds probes first.
func TestCredsOfAnIdleDeposedNode(t *testing.T) {
	st := &deposedStorage{Storage: &logical.InmemStorage{}}
	e, _ := engineOver(t, st, newClock(t0), "idle", "pw-idle")
	ctx := context.Background()
	st.deposed.Store(true)
	time.Sleep(probeEvery + 100*time.Millisecond)
	if _, _, _, err := e.Creds(ctx, "idle", 0); !errors.Is(err, ErrNotWritable) {
		t.Fatalf("creds on an idle deposed node = %v, want ErrNotWritable", err)
	}
}

// readOnlyStorage is a performance standby's storage: every write is logical.ErrReadOnly (Vault
// forwards the request to the active node).
type readOnlyStorage struct{ logical.Storage }

func (readOnlyStorage) Put(context.Context, *logical.StorageEntry) error { return logical.ErrReadOnly }
func (readOnlyStorage) Delete(context.Context, string) error             { return logical.ErrReadOnly }

// TestCredsOnAPerformanceStandby: a read-only node refuses writes by design; its creds answer.
func TestCredsOnAPerformanceStandby(t *testing.T) {
	inner := &logical.InmemStorage{}
	engineOver(t, inner, newClock(t0), "r", "pw-r")
	sys := &logical.StaticSystemView{ReplicationStateVal: consts.ReplicationPerformanceStandby}
	e := New(&logical.BackendConfig{StorageView: readOnlyStorage{inner}, System: sys})
	e.SetClock(newClock(t0))
	if err := e.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	ctx := context.Background()
	_, _ = e.Rotate(ctx, "r") // lands here before Vault forwards it: its writes fail read-only
	time.Sleep(probeEvery + 100*time.Millisecond)
	for range 2 {
		if _, _, _, err := e.Creds(ctx, "r", 0); err != nil {
			t.Fatalf("creds on a performance standby: %v", err)
		}
	}
}

// slowFailingStorage takes its time before refusing a write, counting the probes.
type slowFailingStorage struct {
	logical.Storage
	failing atomic.Bool
	probes  atomic.Int32
}

func (s *slowFailingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if !s.failing.Load() {
		return s.Storage.Put(ctx, e)
	}
	if e.Key == fenceProbeKey {
		s.probes.Add(1)
	}
	time.Sleep(200 * time.Millisecond)
	return errDeposed
}

// TestCredsProbeOnce: many creds reads at once on a node whose writes hang then fail send one
// probe write; the others answer at once instead of queueing behind it.
func TestCredsProbeOnce(t *testing.T) {
	st := &slowFailingStorage{Storage: &logical.InmemStorage{}}
	e, _ := engineOver(t, st, newClock(t0), "p", "pw-probe")
	st.failing.Store(true)
	time.Sleep(probeEvery + 100*time.Millisecond)
	ctx := context.Background()
	var wg sync.WaitGroup
	var refused atomic.Int32
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, _, err := e.Creds(ctx, "p", 0); errors.Is(err, ErrNotWritable) {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := st.probes.Load(); n != 1 {
		t.Fatalf("%d probe writes for 8 reads at once, want 1", n)
	}
	if refused.Load() != 8 {
		t.Fatalf("%d of 8 reads refused on a node that cannot write", refused.Load())
	}
}
