package backend

import (
	"hash/fnv"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// recordCacheSize bounds the records kept: a role and its state are two, so a rotation-heavy
// mount keeps the hot half of ~2,000 roles without growing with the mount (docs/benchmarks.md §1).
const recordCacheSize = 4096

// recordCacheStripes is the number of write generations kept; keys share them by hash.
const recordCacheStripes = 256

// recordCache keeps the bytes of role and state records as storage last held them, so that a
// rotation reads its role, its state and its admin's from memory instead of four storage round
// trips (docs/benchmarks.md §1). It stays true the way the role index does:
//   - a write through engineStorage stores what it wrote once storage answered yes, and drops
//     the key when storage answered no or did not answer (the record is then unknown);
//   - a read from storage is kept only when no write or invalidation of its key began while it
//     ran (a generation per stripe of keys);
//   - Invalidate (a write by another node) drops the key.
//
// State records hold values; they stay inside the plugin process, which holds them anyway while
// it rotates and serves creds.
type recordCache struct {
	mu      sync.Mutex
	entries map[string][]byte
	gens    [recordCacheStripes]uint64
}

func newRecordCache() *recordCache { return &recordCache{entries: map[string][]byte{}} }

// cachedKey says whether key is a record the cache keeps.
func cachedKey(key string) bool {
	return strings.HasPrefix(key, rolePrefix) || strings.HasPrefix(key, statePrefix)
}

func cacheStripe(key string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % recordCacheStripes)
}

// get returns a copy of the cached entry, if any.
func (c *recordCache) get(key string) (*logical.StorageEntry, bool) {
	if c == nil || !cachedKey(key) {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[key]
	if !ok {
		return nil, false
	}
	return &logical.StorageEntry{Key: key, Value: append([]byte(nil), v...)}, true
}

// token is taken before a read from storage; keep stores the read only if it is still current.
func (c *recordCache) token(key string) uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[cacheStripe(key)]
}

// keep stores what a read found, unless a write or invalidation of the stripe began since token.
func (c *recordCache) keep(key string, token uint64, e *logical.StorageEntry) {
	if c == nil || !cachedKey(key) || e == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[cacheStripe(key)] != token {
		return
	}
	c.put(key, e.Value)
}

// writing marks the start of a write of key: reads and writes begun before it are not kept.
// The returned generation is handed to wrote.
func (c *recordCache) writing(key string) uint64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := cacheStripe(key)
	c.gens[s]++
	delete(c.entries, key)
	return c.gens[s]
}

// wrote records the answer to a write begun at gen: value (nil: deleted) is kept when storage
// took it and no other write of the stripe began since; otherwise the key is left out.
func (c *recordCache) wrote(key string, gen uint64, value []byte, err error) {
	if c == nil || !cachedKey(key) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || value == nil || c.gens[cacheStripe(key)] != gen {
		return
	}
	c.put(key, value)
}

// drop forgets key (written elsewhere): the next read goes to storage.
func (c *recordCache) drop(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[cacheStripe(key)]++
	delete(c.entries, key)
}

// put stores a copy of value, making room by dropping an arbitrary entry when full. The caller
// holds mu.
func (c *recordCache) put(key string, value []byte) {
	if _, ok := c.entries[key]; !ok && len(c.entries) >= recordCacheSize {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = append([]byte(nil), value...)
}
