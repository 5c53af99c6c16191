package backend

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// HistoryEntry is one rotation in a role's record. It never holds a secret value: errors are
// redacted before they reach it.
type HistoryEntry struct {
	Time          time.Time        `json:"time"`
	Trigger       Trigger          `json:"trigger"`
	Outcome       string           `json:"outcome"`
	VersionBefore int              `json:"version_before"`
	VersionAfter  int              `json:"version_after"`
	RolledBack    bool             `json:"rolled_back,omitempty"`
	FailedStep    string           `json:"failed_step,omitempty"`
	Error         string           `json:"error,omitempty"`
	Steps         []StepResult     `json:"steps"`
	Consumers     []ConsumerResult `json:"consumers,omitempty"`
	Health        []HealthResult   `json:"health_checks,omitempty"`
	// Forgotten and Warnings are the look for forgotten consumers after the deploy.
	Forgotten []ForgottenConsumer `json:"possible_forgotten_consumers,omitempty"`
	Warnings  []string            `json:"warnings,omitempty"`
	// RequestedBy is the entity and token accessor of a manual request.
	RequestedBy Requester `json:"requested_by,omitempty"`
}

// record appends the outcome of a run to the role's history, newest first, bounded by
// history_limit. A failure to write history is logged, never turned into a failed rotation.
func (e *Engine) record(ctx context.Context, r *run) {
	r.redact()
	e.metrics.observe(r)
	entry := HistoryEntry{
		Time:          e.now(),
		Trigger:       r.out.Trigger,
		Outcome:       r.out.Result,
		VersionBefore: r.out.OldVersion,
		VersionAfter:  r.out.NewVersion,
		RolledBack:    r.out.RolledBack,
		FailedStep:    r.out.FailedStep,
		Error:         r.out.Error,
		Steps:         r.out.Steps,
		Consumers:     r.out.Consumers,
		Health:        r.out.Health,
		Forgotten:     r.out.Forgotten,
		Warnings:      r.out.Warnings,
		RequestedBy:   r.by,
	}
	if entry.VersionAfter == 0 {
		entry.VersionAfter = entry.VersionBefore
	}
	// One small write per rotation, whatever history_limit is: the record never rewrites earlier
	// entries. Once the history is full the oldest entry goes too, off the rotation's path.
	limit := e.Config().HistoryLimit
	seq, err := e.histSeq.next(ctx, e.storage, r.role.Name, limit)
	if err == nil {
		err = putJSON(ctx, e.storage, historyKey(r.role.Name, seq), entry)
	}
	if err != nil {
		e.logger.Error("write history", "role", r.role.Name, "error", err)
	} else if seq > uint64(limit) {
		e.trimHistory(ctx, r.role.Name, seq-uint64(limit))
	}
	e.announce(r)
}

// trimHistory deletes a history entry that fell out of history_limit, in the background: the
// rotation has answered by then (docs/benchmarks.md §1). The delete runs under the role's lock
// and only while the role is the one that wrote the entry (a role deleted and created again
// meanwhile starts a new history, whose entry of the same number is not the one to trim). An
// entry left behind (a failed delete, a closing engine) is harmless: reads page up to the limit,
// and the first rotation after a restart trims what lies beyond it.
func (e *Engine) trimHistory(ctx context.Context, name string, seq uint64) {
	epoch := e.histSeq.epochOf(name)
	del := func() {
		if e.histSeq.epochOf(name) != epoch {
			return
		}
		if err := deleteKey(ctx, e.storage, historyKey(name, seq)); err != nil {
			e.logger.Warn("trim history", "role", name, "error", err)
		}
	}
	if !e.flights.start() {
		del() // the caller holds the role's lock
		return
	}
	go func() {
		defer e.flights.done()
		unlock := e.locks.lock(name)
		defer unlock()
		del()
	}()
}

// History returns the role's rotations, newest first, at most history_limit of them.
func (e *Engine) History(ctx context.Context, name string) ([]HistoryEntry, error) {
	page, err := e.HistoryPage(ctx, name, HistoryQuery{Limit: min(e.Config().HistoryLimit, MaxHistoryPage)})
	if err != nil {
		return nil, err
	}
	return page.Entries, nil
}

// History paging: one list of the role's keys, then at most Limit reads.
const (
	DefaultHistoryPage = 100
	MaxHistoryPage     = 1000
)

// HistoryQuery selects a page: the Limit newest entries numbered below Before (0: the newest).
type HistoryQuery struct {
	Limit  int
	Before int64
}

// HistoryPage is a page of entries, newest first; Next is the Before of the following page (0:
// none).
type HistoryPage struct {
	Entries []HistoryEntry
	Seqs    []uint64
	Next    uint64
}

// HistoryPage returns one page of the role's rotations, newest first.
func (e *Engine) HistoryPage(ctx context.Context, name string, q HistoryQuery) (*HistoryPage, error) {
	if q.Limit == 0 {
		q.Limit = DefaultHistoryPage
	}
	if q.Limit < 1 || q.Limit > MaxHistoryPage {
		return nil, userError(fmt.Errorf("limit: must be between 1 and %d", MaxHistoryPage))
	}
	if q.Before < 0 {
		return nil, userError(errors.New("before: must not be negative"))
	}
	seqs, err := listHistory(ctx, e.storage, name)
	if err != nil {
		return nil, err
	}
	if limit := e.Config().HistoryLimit; len(seqs) > limit {
		seqs = seqs[len(seqs)-limit:]
	}
	if q.Before > 0 {
		seqs = seqs[:sort.Search(len(seqs), func(i int) bool { return seqs[i] >= uint64(q.Before) })]
	}
	page := &HistoryPage{}
	if len(seqs) > q.Limit {
		seqs = seqs[len(seqs)-q.Limit:]
		page.Next = seqs[0]
	}
	for i := len(seqs) - 1; i >= 0; i-- {
		var h HistoryEntry
		ok, err := getJSON(ctx, e.storage, historyKey(name, seqs[i]), &h)
		if err != nil {
			return nil, err
		}
		if ok {
			page.Entries = append(page.Entries, h)
			page.Seqs = append(page.Seqs, seqs[i])
		}
	}
	return page, nil
}

// historyKey is where entry seq of a role's history lives: one key per entry, numbered in order.
func historyKey(name string, seq uint64) string {
	return fmt.Sprintf("%s%s/%020d", historyPrefix, name, seq)
}

// listHistory returns the sequence numbers of a role's history entries, oldest first.
func listHistory(ctx context.Context, s logical.Storage, name string) ([]uint64, error) {
	keys, err := s.List(ctx, historyPrefix+name+"/")
	if err != nil {
		return nil, fmt.Errorf("list history of %s: %w", name, err)
	}
	seqs := make([]uint64, 0, len(keys))
	for _, k := range keys {
		if n, err := strconv.ParseUint(k, 10, 64); err == nil {
			seqs = append(seqs, n)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	return seqs, nil
}

// historySeqs hands out each role's next history sequence number. It lists storage once per
// role per process (the role's lock is held by every caller), trimming what lies beyond the
// limit then, and counts in memory afterwards.
type historySeqs struct {
	mu   sync.Mutex
	last map[string]uint64
	// epochs count the deletions of each role: a role created again is another history.
	epochs map[string]uint64
}

func (h *historySeqs) epochOf(name string) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.epochs[name]
}

func (h *historySeqs) next(ctx context.Context, s logical.Storage, name string, limit int) (uint64, error) {
	h.mu.Lock()
	last, known := h.last[name]
	h.mu.Unlock()
	if !known {
		seqs, err := listHistory(ctx, s, name)
		if err != nil {
			return 0, err
		}
		if len(seqs) > 0 {
			last = seqs[len(seqs)-1]
		}
		for len(seqs) >= limit && len(seqs) > 0 { // keep limit-1, the new entry makes limit
			if err := deleteKey(ctx, s, historyKey(name, seqs[0])); err != nil {
				return 0, err
			}
			seqs = seqs[1:]
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil {
		h.last = map[string]uint64{}
	}
	h.last[name] = last + 1
	return last + 1, nil
}

// forget drops a deleted role's counter.
func (h *historySeqs) forget(name string) {
	h.mu.Lock()
	delete(h.last, name)
	if h.epochs == nil {
		h.epochs = map[string]uint64{}
	}
	h.epochs[name]++
	h.mu.Unlock()
}

// deleteHistory removes every entry of a role's history.
func deleteHistory(ctx context.Context, s logical.Storage, name string) error {
	seqs, err := listHistory(ctx, s, name)
	if err != nil {
		return err
	}
	for _, n := range seqs {
		if err := deleteKey(ctx, s, historyKey(name, n)); err != nil {
			return err
		}
	}
	return nil
}
