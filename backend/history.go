package backend

import (
	"context"
	"time"
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
	// RequestedBy is the entity and token accessor of a manual request.
	RequestedBy Requester `json:"requested_by,omitempty"`
}

// record appends the outcome of a run to the role's history, newest first, bounded by
// history_limit. A failure to write history is logged, never turned into a failed rotation.
func (e *Engine) record(ctx context.Context, r *run) {
	r.redact()
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
		RequestedBy:   r.by,
	}
	if entry.VersionAfter == 0 {
		entry.VersionAfter = entry.VersionBefore
	}
	hist, err := e.History(ctx, r.role.Name)
	if err != nil {
		e.logger.Error("read history", "role", r.role.Name, "error", err)
	}
	hist = append([]HistoryEntry{entry}, hist...)
	if limit := e.Config().HistoryLimit; len(hist) > limit {
		hist = hist[:limit]
	}
	if err := putJSON(ctx, e.storage, historyPrefix+r.role.Name, hist); err != nil {
		e.logger.Error("write history", "role", r.role.Name, "error", err)
	}
	e.announce(r)
}

// History returns the role's rotations, newest first.
func (e *Engine) History(ctx context.Context, name string) ([]HistoryEntry, error) {
	var hist []HistoryEntry
	if _, err := getJSON(ctx, e.storage, historyPrefix+name, &hist); err != nil {
		return nil, err
	}
	return hist, nil
}
