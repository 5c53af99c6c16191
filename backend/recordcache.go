package backend

import (
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// recordCacheSize and recordCacheBytes bound the records kept: a role and its state are two, so
// a rotation-heavy mount keeps the hot part of ~2,000 roles without growing with the mount, and
// records larger than recordCacheMaxValue (a state with many kept keys) are never kept
// (docs/benchmarks.md §1, §3).
const (
	recordCacheSize     = 4096
	recordCacheBytes    = 16 << 20
	recordCacheMaxValue = 64 << 10
)

// recordCache keeps the bytes of role and state records as storage last held them, so that a
// rotation reads its role, its state and its admin's from memory instead of four storage round
// trips (docs/benchmarks.md §1). It never answers a record older than storage's:
//   - while a write (put or delete) of a key is in flight, nothing is kept for it, and every read
//     that began before the write ended is discarded (a generation per key, bumped when a write
//     starts and when it ends);
//   - a write that storage took is kept (a delete: nothing), unless another write of the key
//     began meanwhile;
//   - a write storage refused or did not answer leaves the key unknown: it may still land, so the
//     key is read from storage, never kept, until a later write of it succeeds;
//   - Invalidate (a write by another node) drops the key.
//
// State records hold values; they stay inside the plugin process, which holds them anyway while
// it rotates and serves creds.
type recordCache struct {
	mu       sync.Mutex
	entries  map[string][]byte
	bytes    int
	gens     map[string]uint64 // bumped at the start and end of every write and at every drop; one per record key seen (two per role)
	inflight map[string]int    // writes in flight per key
	unknown  map[string]bool   // the last write's outcome is unknown
}

func newRecordCache() *recordCache {
	return &recordCache{entries: map[string][]byte{}, gens: map[string]uint64{}, inflight: map[string]int{}, unknown: map[string]bool{}}
}

// cachedKey says whether key is a record the cache keeps.
func cachedKey(key string) bool {
	return strings.HasPrefix(key, rolePrefix) || strings.HasPrefix(key, statePrefix)
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
	return c.gens[key]
}

// keep stores what a read found, unless a write of the key began since token (or is in flight),
// the key's last write is unknown, or it was dropped meanwhile.
func (c *recordCache) keep(key string, token uint64, e *logical.StorageEntry) {
	if c == nil || !cachedKey(key) || e == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gens[key] != token || c.inflight[key] > 0 || c.unknown[key] {
		return
	}
	c.put(key, e.Value)
}

// writing marks the start of a write of key. The returned generation is handed to wrote.
func (c *recordCache) writing(key string) uint64 {
	if c == nil || !cachedKey(key) {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[key]++
	c.inflight[key]++
	c.remove(key)
	return c.gens[key]
}

// wrote records the answer to a write begun at gen: value (nil: a delete) is kept when storage
// took it and no other write of the key began since; a failed write leaves the key unknown.
func (c *recordCache) wrote(key string, gen uint64, value []byte, err error) {
	if c == nil || !cachedKey(key) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	mine := c.gens[key] == gen
	c.gens[key]++ // reads that began during the write are not kept
	if c.inflight[key]--; c.inflight[key] <= 0 {
		delete(c.inflight, key)
	}
	if err != nil {
		c.unknown[key] = true
		c.remove(key)
		return
	}
	if mine {
		delete(c.unknown, key)
	}
	if mine && value != nil && c.inflight[key] == 0 {
		c.put(key, value)
	}
}

// drop forgets key (written elsewhere): the next read goes to storage.
func (c *recordCache) drop(key string) {
	if c == nil || !cachedKey(key) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[key]++
	c.remove(key)
}

// remove deletes key's cached bytes. The caller holds mu.
func (c *recordCache) remove(key string) {
	if v, ok := c.entries[key]; ok {
		c.bytes -= len(v)
		delete(c.entries, key)
	}
}

// put stores a copy of value, making room by dropping arbitrary entries when full. The caller
// holds mu.
func (c *recordCache) put(key string, value []byte) {
	c.remove(key)
	if len(value) > recordCacheMaxValue {
		return
	}
	for k := range c.entries {
		if len(c.entries) < recordCacheSize && c.bytes+len(value) <= recordCacheBytes {
			break
		}
		c.remove(k)
	}
	c.entries[key] = append([]byte(nil), value...)
	c.bytes += len(value)
}
