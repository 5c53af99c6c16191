package backend

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// hookStorage pauses a Put/Delete before it lands and a Get after it read (found by review:
// both interleavings left a record older than storage's in the cache).
type hookStorage struct {
	logical.Storage
	beforeWrite chan struct{} // closed by the test to let the write land
	writeHeld   chan struct{}
	afterRead   chan struct{}
	readDone    chan struct{}
	holdRead    bool
}

func (h *hookStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	close(h.writeHeld)
	<-h.beforeWrite
	return h.Storage.Put(ctx, e)
}
func (h *hookStorage) Delete(ctx context.Context, k string) error {
	close(h.writeHeld)
	<-h.beforeWrite
	return h.Storage.Delete(ctx, k)
}
func (h *hookStorage) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	e, err := h.Storage.Get(ctx, k)
	if h.holdRead {
		close(h.readDone)
		<-h.afterRead
	}
	return e, err
}

func hookedCache(t *testing.T) (*hookStorage, engineStorage) {
	mem := &logical.InmemStorage{}
	_ = mem.Put(context.Background(), &logical.StorageEntry{Key: "state/x", Value: []byte("OLD")})
	h := &hookStorage{Storage: mem, beforeWrite: make(chan struct{}), writeHeld: make(chan struct{}), afterRead: make(chan struct{}), readDone: make(chan struct{})}
	return h, engineStorage{Storage: h, written: func(string) {}, writeResult: func(string, error) {}, cache: newRecordCache()}
}

// A read racing a delete does not bring the deleted record back.
func TestRecordCacheReadDuringDelete(t *testing.T) {
	ctx := context.Background()
	h, s := hookedCache(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Delete(ctx, "state/x") }()
	<-h.writeHeld
	// a reader (creds, status, index refresh) reads while the delete is in flight
	if e, _ := s.Get(ctx, "state/x"); e == nil || string(e.Value) != "OLD" {
		t.Fatalf("unexpected %v", e)
	}
	close(h.beforeWrite)
	wg.Wait()
	raw, _ := h.Storage.Get(ctx, "state/x")
	e, _ := s.Get(ctx, "state/x")
	if raw == nil && e != nil {
		t.Errorf("storage has no record, engine reads %q from cache (deleted record resurrected)", e.Value)
	}
}

// A read that saw the old record and ends after a put does not overwrite the new one.
func TestRecordCacheReadDuringPut(t *testing.T) {
	ctx := context.Background()
	h, s := hookedCache(t)
	h.holdRead = true
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = s.Put(ctx, &logical.StorageEntry{Key: "state/x", Value: []byte("NEW")}) }()
	<-h.writeHeld
	got := make(chan *logical.StorageEntry)
	go func() { e, _ := s.Get(ctx, "state/x"); got <- e }()
	<-h.readDone // the read saw OLD
	h.holdRead = false
	close(h.beforeWrite)
	wg.Wait() // put landed, wrote() cached NEW
	close(h.afterRead)
	<-got // keep(OLD) with a token still current
	raw, _ := h.Storage.Get(ctx, "state/x")
	e, _ := s.Get(ctx, "state/x")
	if string(raw.Value) != string(e.Value) {
		t.Errorf("storage holds %q, engine reads %q from cache", raw.Value, e.Value)
	}
}

// failStorage refuses puts (as a storage that timed out would answer), while the test decides
// whether the write lands later.
type failStorage struct{ logical.Storage }

func (f failStorage) Put(context.Context, *logical.StorageEntry) error {
	return errors.New("timed out")
}

// A write whose outcome is unknown may land later with nobody telling this engine: until a later
// write of the key succeeds, the key is read from storage and never kept.
func TestRecordCacheUnknownWriteNeverCached(t *testing.T) {
	ctx := context.Background()
	mem := &logical.InmemStorage{}
	_ = mem.Put(ctx, &logical.StorageEntry{Key: "state/x", Value: []byte("OLD")})
	cache := newRecordCache()
	s := engineStorage{Storage: failStorage{mem}, cache: cache}
	if err := s.Put(ctx, &logical.StorageEntry{Key: "state/x", Value: []byte("NEW")}); err == nil {
		t.Fatal("the put did not fail")
	}
	if e, _ := s.Get(ctx, "state/x"); e == nil || string(e.Value) != "OLD" {
		t.Fatalf("read %v", e)
	}
	_ = mem.Put(ctx, &logical.StorageEntry{Key: "state/x", Value: []byte("NEW")}) // it landed after all
	if e, _ := s.Get(ctx, "state/x"); e == nil || string(e.Value) != "NEW" {
		t.Fatalf("after the unknown write landed the engine reads %q", e.Value)
	}
	// A later write that succeeds makes the key cacheable again.
	ok := engineStorage{Storage: mem, cache: cache}
	if err := ok.Put(ctx, &logical.StorageEntry{Key: "state/x", Value: []byte("NEWER")}); err != nil {
		t.Fatal(err)
	}
	if e, hit := cache.get("state/x"); !hit || string(e.Value) != "NEWER" {
		t.Fatalf("a successful write after the unknown one is not kept: %v %v", e, hit)
	}
}
