package backend

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// readCountingStorage counts reads, to tell a cached answer from one built from storage.
type readCountingStorage struct {
	*logical.InmemStorage
	gets atomic.Int64
}

func (c *readCountingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.gets.Add(1)
	return c.InmemStorage.Get(ctx, key)
}

func currentKid(t *testing.T, te *testEnv, name string) string {
	t.Helper()
	return te.state(t, name).Current().Secret["kid"]
}

// After a rotation the new kid is published at once, although the previous document was cached;
// a second read of an unchanged role reads no storage.
func TestKeySetCacheFollowsRotation(t *testing.T) {
	storage := &readCountingStorage{InmemStorage: &logical.InmemStorage{}}
	te := newEnv(t)
	te.e.storage = engineStorage{Storage: storage, written: te.e.storageWritten}
	te.storage = storage.InmemStorage
	jwtRole(t, te, "sign", 5, time.Hour)
	first := currentKid(t, te, "sign")
	if got := publishedKids(t, te, "sign"); !slices.Equal(got, []string{first}) {
		t.Fatalf("published %v, want [%s]", got, first)
	}
	before := storage.gets.Load()
	publishedKids(t, te, "sign")
	if n := storage.gets.Load() - before; n != 0 {
		t.Fatalf("a cached key set read storage %d times", n)
	}

	rotateOK(t, te, "sign")
	second := currentKid(t, te, "sign")
	if got, want := publishedKids(t, te, "sign"), sorted([]string{first, second}); !slices.Equal(got, want) {
		t.Fatalf("published %v right after the rotation, want %v", got, want)
	}
	// Rollback and a role write change it too.
	if out, err := te.e.Rollback(context.Background(), "sign", 0); err != nil || !out.Success {
		t.Fatalf("rollback: %+v %v", out, err)
	}
	if got := currentKid(t, te, "sign"); got != first {
		t.Fatalf("current kid after rollback %s, want %s", got, first)
	}
	if _, err := te.e.WriteRole(context.Background(), "sign", RoleInput{Settings: map[string]interface{}{"verification_ttl": 0}}); err != nil {
		t.Fatal(err)
	}
	if got := publishedKids(t, te, "sign"); !slices.Equal(got, []string{first}) {
		t.Fatalf("published %v after verification_ttl=0, want only the current key %s", got, first)
	}
	if err := te.e.DeleteRole(context.Background(), "sign"); err != nil {
		t.Fatal(err)
	}
	if _, err := te.e.KeySet(context.Background(), "sign"); err != ErrRoleNotFound {
		t.Fatalf("key set of a deleted role: %v, want ErrRoleNotFound", err)
	}
}

// A missing role and a role that publishes nothing answer the same error, and neither is cached.
func TestKeySetNotFoundAlike(t *testing.T) {
	te := newEnv(t)
	te.importRole(t, "plain", "pw-plain")
	for _, name := range []string{"plain", "missing"} {
		if _, err := te.e.KeySet(context.Background(), name); err != ErrRoleNotFound {
			t.Fatalf("KeySet(%s) = %v, want ErrRoleNotFound", name, err)
		}
	}
	if n := te.e.keySets.len(); n != 0 {
		t.Fatalf("%d documents cached for roles that publish none", n)
	}
}

// A retired key leaves the cached document when its verification window ends, with no write.
func TestKeySetCacheExpiresWithRetiredKey(t *testing.T) {
	te := newEnv(t)
	jwtRole(t, te, "sign", 5, time.Hour)
	old := currentKid(t, te, "sign")
	rotateOK(t, te, "sign")
	cur := currentKid(t, te, "sign")
	both := sorted([]string{old, cur})
	if got := publishedKids(t, te, "sign"); !slices.Equal(got, both) {
		t.Fatalf("published %v, want %v", got, both)
	}
	te.clock.Advance(time.Hour - time.Second)
	if got := publishedKids(t, te, "sign"); !slices.Equal(got, both) {
		t.Fatalf("published %v a second before the window ends, want %v", got, both)
	}
	te.clock.Advance(time.Second)
	if got := publishedKids(t, te, "sign"); !slices.Equal(got, []string{cur}) {
		t.Fatalf("published %v when the window ended, want [%s]", got, cur)
	}
}

// Two engines over one storage: what the active one writes (a rotation, a staged value during
// deploy, its end, a delete) reaches the standby's cached document through Invalidate.
func TestKeySetCacheInvalidate(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	active := newEnvOn(t, storage, clock)
	standby := newEnvOn(t, storage, clock)
	ctx := context.Background()
	jwtRole(t, active, "sign", 5, time.Hour)
	jwtRole(t, active, "donor", 5, time.Hour) // its key stands in for a staged one
	first := currentKid(t, active, "sign")
	if got := publishedKids(t, standby, "sign"); !slices.Equal(got, []string{first}) {
		t.Fatalf("standby published %v, want [%s]", got, first)
	}

	rotateOK(t, active, "sign")
	second := currentKid(t, active, "sign")
	if got := publishedKids(t, standby, "sign"); !slices.Equal(got, []string{first}) {
		t.Fatalf("standby published %v before invalidation; the test no longer sees the cache", got)
	}
	standby.e.Invalidate(ctx, statePrefix+"sign")
	if got, want := publishedKids(t, standby, "sign"), sorted([]string{first, second}); !slices.Equal(got, want) {
		t.Fatalf("standby published %v after invalidation, want %v", got, want)
	}

	// A staged value during deploy is published, and leaves when the record goes.
	st := active.state(t, "sign")
	staged := active.state(t, "donor").Current().Secret
	active.putPending(t, "sign", &Pending{Old: st.Current().Secret, New: staged, OldVersion: 2, NewVersion: 3,
		Phase: PhaseDeploying, Deployed: true, Started: clock.Now()})
	standby.e.Invalidate(ctx, pendingPrefix+"sign")
	if got, want := publishedKids(t, standby, "sign"), sorted([]string{first, second, staged["kid"]}); !slices.Equal(got, want) {
		t.Fatalf("standby published %v during deploy, want %v with the staged key", got, want)
	}
	if err := active.e.dropRecord(ctx, "sign"); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, pendingPrefix+"sign")
	if got, want := publishedKids(t, standby, "sign"), sorted([]string{first, second}); !slices.Equal(got, want) {
		t.Fatalf("standby published %v after the record went, want %v", got, want)
	}

	if err := active.e.DeleteRole(ctx, "sign"); err != nil {
		t.Fatal(err)
	}
	standby.e.Invalidate(ctx, rolePrefix+"sign")
	if _, err := standby.e.KeySet(ctx, "sign"); err != ErrRoleNotFound {
		t.Fatalf("standby key set of a deleted role: %v, want ErrRoleNotFound", err)
	}
}

// The cache holds at most its bound, dropping the least recently served; a document built from
// what storage held before a write is not stored after that write's drop.
func TestKeySetCacheBoundAndRace(t *testing.T) {
	c := newKeySetCache(3)
	now := t0
	for i := 0; i < 4; i++ {
		if i == 3 {
			c.get("r0", now) // r0 served recently: r1 is the oldest
		}
		name := fmt.Sprintf("r%d", i)
		c.put(c.begin(name), name, []byte("doc"), now, time.Time{})
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d, want 3", c.len())
	}
	if _, ok := c.get("r1", now); ok {
		t.Fatal("the least recently served document was kept")
	}
	if _, ok := c.get("r0", now); !ok {
		t.Fatal("a recently served document was dropped")
	}

	token := c.begin("late")
	c.drop("late") // a write of the role while the fill read storage
	c.put(token, "late", []byte("stale"), now, time.Time{})
	if _, ok := c.get("late", now); ok {
		t.Fatal("a document built before a drop was stored")
	}

	c.put(c.begin("timed"), "timed", []byte("doc"), now, now.Add(time.Minute))
	if _, ok := c.get("timed", now.Add(-time.Second)); ok {
		t.Fatal("served a document built after the clock's now")
	}
	c.put(c.begin("timed"), "timed", []byte("doc"), now, now.Add(time.Minute))
	if _, ok := c.get("timed", now.Add(time.Minute)); ok {
		t.Fatal("served a document at its expiry")
	}
}

// Readers racing rotations never leave a stale document behind: once the rotations are done,
// the published set holds the last key.
func TestKeySetCacheConcurrentRotations(t *testing.T) {
	te := newEnv(t)
	jwtRole(t, te, "sign", 5, time.Hour)
	ctx := context.Background()
	done := make(chan struct{})
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				if _, err := te.e.KeySet(ctx, "sign"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		te.clock.Advance(time.Second)
		rotateOK(t, te, "sign")
	}
	close(done)
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cur := currentKid(t, te, "sign")
	if got := publishedKids(t, te, "sign"); !slices.Contains(got, cur) {
		t.Fatalf("published %v after the rotations, without the current key %s", got, cur)
	}
}
