package backend

import (
	"context"
	"strings"
	"time"
)

// Invalidate keeps the engine's in-memory views true when storage changes underneath it: Vault
// calls it (the backend's InvalidateFunc) on performance standbys and replicated clusters for
// every key another node wrote. Each view is re-read from storage for the key's role: the config,
// the set of roles with a pending record (which creds reads to hand out a staged value), the
// schedule, the history sequence, the role index and the published key set (both dropped, read
// again on next use). A config reload also closes the Docker clients whose endpoint it changed
// or removed.
func (e *Engine) Invalidate(ctx context.Context, key string) {
	log := e.logger.With("key", key)
	e.records.drop(key) // first: every view below reads storage again
	if name := keySetRole(key); name != "" {
		// Last, after the pending set below: a document built before then may lack a staged value.
		defer e.keySets.drop(name)
	}
	if name := indexRole(key); name != "" {
		e.index.stale(name)
		e.relations.stale(name)
	}
	switch {
	case key == configPath:
		if err := e.loadConfig(ctx); err != nil {
			log.Error("invalidate: reload the config", "error", err)
			return
		}
		e.workers.resize(e.Config().MaxParallel)
	case strings.HasPrefix(key, pendingPrefix):
		name := strings.TrimPrefix(key, pendingPrefix)
		p, err := e.loadPending(ctx, name)
		switch {
		case err != nil:
			log.Error("invalidate: read the pending record", "error", err)
			e.pending.add(name) // unknown: the safe side makes the next read look at storage
		case p == nil:
			e.pending.remove(name)
		default:
			e.pending.add(name)
		}
	case strings.HasPrefix(key, rolePrefix), strings.HasPrefix(key, statePrefix):
		name := strings.TrimPrefix(strings.TrimPrefix(key, rolePrefix), statePrefix)
		role, err := e.loadRole(ctx, name)
		if err != nil {
			log.Error("invalidate: read the role", "error", err)
			return
		}
		if role == nil {
			e.queue.set(name, time.Time{})
			return
		}
		st, err := e.loadState(ctx, name)
		if err != nil {
			log.Error("invalidate: read the state", "error", err)
			return
		}
		e.reschedule(role, st)
	case strings.HasPrefix(key, historyPrefix):
		rest := strings.TrimPrefix(key, historyPrefix)
		if i := strings.LastIndexByte(rest, '/'); i > 0 {
			e.histSeq.forget(rest[:i]) // the next entry's number is read from storage again
		}
	}
}
