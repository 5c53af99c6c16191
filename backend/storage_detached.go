package backend

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// storageTimeout bounds one storage call of the engine.
const storageTimeout = 30 * time.Second

// engineStorage is the mount's storage as the engine uses it: a call is not cut short when the
// request that caused it is cancelled (a caller's Ctrl-C, max_request_duration, the engine
// closing), because the record of what a rotation did at the target must be written whatever
// happened to the request; each call has a bound of its own instead. After every write, failed
// or not (it may have landed), written is told the key, so that in-memory copies are dropped.
// Role and state records are read through cache (recordCache: kept true by every write here).
type engineStorage struct {
	logical.Storage
	written func(key string)
	// writeResult hears whether each write (put or delete) of a key reached storage.
	writeResult func(key string, err error)
	cache       *recordCache // nil: every read goes to storage
}

func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
}

func (s engineStorage) List(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.Storage.List(ctx, prefix)
}

func (s engineStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if e, ok := s.cache.get(key); ok {
		return e, nil
	}
	ctx, cancel := detached(ctx)
	defer cancel()
	token := s.cache.token(key)
	e, err := s.Storage.Get(ctx, key)
	if err == nil {
		s.cache.keep(key, token, e)
	}
	return e, err
}

func (s engineStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	defer s.wrote(entry.Key)
	gen := s.cache.writing(entry.Key)
	err := s.Storage.Put(ctx, entry)
	s.cache.wrote(entry.Key, gen, entry.Value, err)
	s.result(entry.Key, err)
	return err
}

func (s engineStorage) Delete(ctx context.Context, key string) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	defer s.wrote(key)
	s.cache.writing(key)
	err := s.Storage.Delete(ctx, key)
	s.result(key, err)
	return err
}

func (s engineStorage) result(key string, err error) {
	if s.writeResult != nil {
		s.writeResult(key, err)
	}
}

func (s engineStorage) wrote(key string) {
	if s.written != nil {
		s.written(key)
	}
}
