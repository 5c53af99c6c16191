package backend

import (
	"context"
	"sort"
	"time"
)

// StatusRow is one role in the inventory: what an auditor asks of every secret.
type StatusRow struct {
	Name                string
	Type                string
	CurrentVersion      int
	LastRotated         time.Time
	Age                 time.Duration
	NextRotation        time.Time
	DueAt               time.Time
	Overdue             bool
	OverdueBy           time.Duration
	AutoRotate          bool
	LastOutcome         string
	ConsecutiveFailures int
	Failing             bool
}

// Status returns every role's row, most overdue first, then by next due time.
func (e *Engine) Status(ctx context.Context) ([]StatusRow, error) {
	roles, err := e.indexedRoles(ctx)
	if err != nil {
		return nil, err
	}
	now := e.now()
	rows := make([]StatusRow, 0, len(roles))
	for _, r := range roles {
		v := e.view(r.Role, r.Sum.state())
		row := StatusRow{
			Name: r.Role.Name, Type: v.Role.Type, CurrentVersion: v.CurrentVersion, LastRotated: v.LastRotated,
			NextRotation: v.NextRotation, DueAt: v.DueAt, Overdue: v.Overdue, AutoRotate: v.Role.AutoRotate,
			LastOutcome: v.LastOutcome, ConsecutiveFailures: v.ConsecutiveFailures, Failing: v.Failing,
		}
		if !v.LastRotated.IsZero() {
			row.Age = now.Sub(v.LastRotated)
		}
		if v.Overdue {
			row.OverdueBy = now.Sub(v.DueAt)
		}
		rows = append(rows, row)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.OverdueBy != b.OverdueBy {
			return a.OverdueBy > b.OverdueBy
		}
		if !a.DueAt.Equal(b.DueAt) {
			return a.DueAt.Before(b.DueAt)
		}
		return a.Name < b.Name
	})
	return rows, nil
}
