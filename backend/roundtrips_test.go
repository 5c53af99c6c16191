package backend

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// tripStorage records every storage call the engine makes (each one is a gRPC round trip to
// Vault for an external plugin).
type tripStorage struct {
	*logical.InmemStorage
	mu    sync.Mutex
	calls []string
	// gate, when set, holds every history delete until it is closed.
	gate chan struct{}
}

func (s *tripStorage) note(op, key string) {
	s.mu.Lock()
	s.calls = append(s.calls, op+" "+key)
	s.mu.Unlock()
}

func (s *tripStorage) List(ctx context.Context, prefix string) ([]string, error) {
	s.note("list", prefix)
	return s.InmemStorage.List(ctx, prefix)
}

func (s *tripStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.note("get", key)
	return s.InmemStorage.Get(ctx, key)
}

func (s *tripStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.note("put", e.Key)
	return s.InmemStorage.Put(ctx, e)
}

func (s *tripStorage) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	gate := s.gate
	s.mu.Unlock()
	if gate != nil && strings.HasPrefix(key, historyPrefix) {
		<-gate
	}
	s.note("delete", key)
	return s.InmemStorage.Delete(ctx, key)
}

func (s *tripStorage) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// A steady-state rotation of a role linked to an admin makes five storage round trips, all
// writes: the pending record, its applied phase (while the new value is verified, so four wait
// in line), the promoted state, the record's removal and one history entry. Role, state and the admin's are read from memory (recordCache), the history
// is never read, and an entry that falls out of history_limit is deleted after the answer.
func TestRotationStorageRoundTrips(t *testing.T) {
	storage := &tripStorage{InmemStorage: &logical.InmemStorage{}}
	te := newEnv(t)
	te.e.records = newRecordCache()
	te.e.storage = engineStorage{Storage: storage, written: te.e.storageWritten, cache: te.e.records}
	te.storage = storage.InmemStorage
	ctx := context.Background()
	cfg := te.e.Config()
	cfg.HistoryLimit = 3
	if err := te.e.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	te.importRole(t, "admin", "pw-admin")
	te.importRole(t, "app", "pw-app", func(in *RoleInput) { in.Settings[fFaultAdmin] = "admin" })
	for i := 0; i < 5; i++ { // past history_limit, so that trimming is part of the steady state
		if out, err := te.e.Rotate(ctx, "app"); err != nil || !out.Success {
			t.Fatalf("warm-up rotation %d: %+v %v", i, out, err)
		}
	}
	waitTrimmed(t, storage, "app", 3)
	storage.take()

	// History deletes are held: the rotation answers without waiting for its trim.
	gate := make(chan struct{})
	storage.mu.Lock()
	storage.gate = gate
	storage.mu.Unlock()
	out, err := te.e.Rotate(ctx, "app")
	if err != nil || !out.Success {
		t.Fatalf("rotate: %+v %v", out, err)
	}
	onPath := storage.take()
	close(gate)
	want := []string{"put pending/app", "put pending/app", "put state/app", "delete pending/app", "put history/app/"}
	if len(onPath) != len(want) {
		t.Fatalf("a rotation made %d storage calls before it answered, want %d:\n%s", len(onPath), len(want), strings.Join(onPath, "\n"))
	}
	for i, c := range onPath {
		if !strings.HasPrefix(c, want[i]) {
			t.Fatalf("storage call %d is %q, want %q; all:\n%s", i, c, want[i], strings.Join(onPath, "\n"))
		}
	}
	waitTrimmed(t, storage, "app", 3)
	if later := storage.take(); len(later) != 1 || !strings.HasPrefix(later[0], "delete history/app/") {
		t.Fatalf("after the answer: %v, want one history delete", later)
	}

	// The cache never answers with a record older than storage's: a write by another node
	// (Invalidate) is read again.
	st := te.state(t, "app")
	st.LastError = "written by another node"
	if err := putJSON(ctx, storage.InmemStorage, statePrefix+"app", st); err != nil {
		t.Fatal(err)
	}
	te.e.Invalidate(ctx, statePrefix+"app")
	got, err := te.e.loadState(ctx, "app")
	if err != nil || got.LastError != "written by another node" {
		t.Fatalf("after Invalidate the engine reads %+v, %v", got, err)
	}
}

func waitTrimmed(t *testing.T, s *tripStorage, name string, limit int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := s.InmemStorage.List(context.Background(), historyPrefix+name+"/")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) <= limit {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("history of %s still holds %d entries, limit %d", name, len(keys), limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A write whose outcome storage did not give leaves the record out of the cache: the next read
// asks storage, whatever the write did.
func TestRecordCacheDropsUnknownWrites(t *testing.T) {
	c := newRecordCache()
	key := statePrefix + "app"
	gen := c.writing(key)
	c.wrote(key, gen, []byte(`{"v":1}`), nil)
	if e, ok := c.get(key); !ok || string(e.Value) != `{"v":1}` {
		t.Fatalf("a stored write is not kept: %v %v", e, ok)
	}
	gen = c.writing(key)
	c.wrote(key, gen, []byte(`{"v":2}`), fmt.Errorf("storage did not answer"))
	if _, ok := c.get(key); ok {
		t.Fatal("a write with an unknown outcome left a cached record")
	}
	gen = c.writing(key) // a later write that succeeds clears the unknown mark
	c.wrote(key, gen, []byte(`{"v":2}`), nil)
	// A read that began before a write is not kept after it.
	token := c.token(key)
	gen = c.writing(key)
	c.keep(key, token, &logical.StorageEntry{Key: key, Value: []byte(`{"v":"old"}`)})
	c.wrote(key, gen, []byte(`{"v":3}`), nil)
	if e, _ := c.get(key); e == nil || string(e.Value) != `{"v":3}` {
		t.Fatalf("cache holds %v after a racing read and write", e)
	}
	// Two writes racing: neither is kept (storage's order is unknown).
	g1 := c.writing(key)
	g2 := c.writing(key)
	c.wrote(key, g2, []byte(`{"v":5}`), nil)
	c.wrote(key, g1, []byte(`{"v":4}`), nil)
	if e, ok := c.get(key); ok {
		t.Fatalf("a record of two racing writes was kept: %s", e.Value)
	}
	// Bounded.
	for i := 0; i < recordCacheSize*2; i++ {
		k := fmt.Sprintf("%sr%d", rolePrefix, i)
		c.wrote(k, c.writing(k), []byte("x"), nil)
	}
	if n := len(c.entries); n > recordCacheSize {
		t.Fatalf("cache holds %d records, bound %d", n, recordCacheSize)
	}
	// A caller changing the returned bytes does not change the cache.
	e, _ := c.get(key)
	if e != nil {
		e.Value[0] = 'X'
		if again, _ := c.get(key); again != nil && again.Value[0] == 'X' {
			t.Fatal("get returned the cache's own bytes")
		}
	}
}
