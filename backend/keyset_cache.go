package backend

import (
	"container/list"
	"hash/fnv"
	"strings"
	"sync"
	"time"
)

// maxCachedKeySets bounds the published documents kept in memory; the least recently served
// one goes first.
const maxCachedKeySets = 1024

// keySetCache holds each publishing role's document (jwks/NAME), so that the unauthenticated
// path neither reads storage nor decodes private keys per request. An entry is dropped whenever
// the role's role, state or pending record is written (by this engine or, through Invalidate,
// by another node) and is not served at or after its expiry: the first time the document would
// change by time alone (a retired key leaving the set).
type keySetCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]*list.Element // of *keySetEntry
	lru     list.List                // front: most recently served
	// gens count drops per stripe of role names: a document built from storage read before a
	// drop is not stored after it. Striped, so that a busy mount's rotations of other roles
	// rarely stop a fill from being stored; bounded, unlike a count per role.
	gens [keySetStripes]uint64
}

const keySetStripes = 64

func stripe(name string) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % keySetStripes)
}

type keySetEntry struct {
	name    string
	doc     []byte
	built   time.Time
	expires time.Time // zero: only a write changes it
}

func newKeySetCache(max int) *keySetCache {
	return &keySetCache{max: max, entries: map[string]*list.Element{}}
}

// get returns name's document if one is cached and still true at now. A clock that went back
// before the build is a miss too: the document may hold a key that had not yet left the set.
func (c *keySetCache) get(name string, now time.Time) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[name]
	if !ok {
		return nil, false
	}
	ent := el.Value.(*keySetEntry)
	if now.Before(ent.built) || (!ent.expires.IsZero() && !now.Before(ent.expires)) {
		c.remove(el)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return ent.doc, true
}

// begin returns the token a fill of name passes to put; take it before reading storage.
func (c *keySetCache) begin(name string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[stripe(name)]
}

// put stores a document built at now from what storage held after begin returned token,
// unless something was dropped since (it may have been built from what that write replaced).
func (c *keySetCache) put(token uint64, name string, doc []byte, now, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if token != c.gens[stripe(name)] {
		return
	}
	if el, ok := c.entries[name]; ok {
		c.remove(el)
	}
	c.entries[name] = c.lru.PushFront(&keySetEntry{name: name, doc: doc, built: now, expires: expires})
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
}

// drop forgets name's document; call it after the write that changes it.
func (c *keySetCache) drop(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[stripe(name)]++
	if el, ok := c.entries[name]; ok {
		c.remove(el)
	}
}

func (c *keySetCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (c *keySetCache) remove(el *list.Element) {
	delete(c.entries, el.Value.(*keySetEntry).name)
	c.lru.Remove(el)
}

// keySetRole is the role whose published document a storage key feeds (its role, state or
// pending record), or "" for any other key.
func keySetRole(key string) string {
	for _, prefix := range []string{rolePrefix, statePrefix, pendingPrefix} {
		if name, ok := strings.CutPrefix(key, prefix); ok {
			return name
		}
	}
	return ""
}
