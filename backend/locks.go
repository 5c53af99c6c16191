package backend

import "sync"

// roleLocks holds one mutex per role name, so that a manual, a scheduled and a recovery
// rotation of the same role never run at once. Striped locks are not used: a role's lock must
// never be shared with another role's.
type roleLocks struct{ m sync.Map }

func (l *roleLocks) get(name string) *sync.Mutex {
	mu, _ := l.m.LoadOrStore(name, &sync.Mutex{})
	return mu.(*sync.Mutex)
}

// lock takes the role's lock and returns its release.
func (l *roleLocks) lock(name string) func() {
	mu := l.get(name)
	mu.Lock()
	return mu.Unlock
}

// tryLock takes the role's lock only if it is free.
func (l *roleLocks) tryLock(name string) (func(), bool) {
	mu := l.get(name)
	if !mu.TryLock() {
		return nil, false
	}
	return mu.Unlock, true
}
