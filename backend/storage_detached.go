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
// happened to the request; each call has a bound of its own instead.
type engineStorage struct{ logical.Storage }

func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), storageTimeout)
}

func (s engineStorage) List(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.Storage.List(ctx, prefix)
}

func (s engineStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.Storage.Get(ctx, key)
}

func (s engineStorage) Put(ctx context.Context, entry *logical.StorageEntry) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.Storage.Put(ctx, entry)
}

func (s engineStorage) Delete(ctx context.Context, key string) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	return s.Storage.Delete(ctx, key)
}
