package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// The live sessions of a role's logins, from pg_stat_activity (README "Finding forgotten
// services"). They are read through the admin's pooled session (a self-managed role: its login's
// current credential), bounded like every session of the rotator. PostgreSQL shows another
// login's session start, address and state only to a superuser, a member of pg_read_all_stats,
// or a role with the privileges of that login: an admin without pg_read_all_stats sees each
// session with those columns null, and such a session is listed as Hidden.

var _ rotators.SessionLister = (*target)(nil)

// hiddenWhy is what an admin lacks when PostgreSQL hides its dependents' sessions.
const hiddenWhy = "PostgreSQL shows another login's sessions in detail only to members of pg_read_all_stats: GRANT pg_read_all_stats TO the admin_role's login"

// activityQuery lists the sessions of the logins $1, but the asking session and the engine's own
// pooled sessions $2, oldest first, at most $3. The age is computed by the server's clock, so that
// the engine compares it with durations of its own clock, never with the server's timestamps.
const activityQuery = `SELECT a.pid::int8, a.usename::text, COALESCE(a.application_name, ''), host(a.client_addr), a.client_port,
  a.backend_start, EXTRACT(EPOCH FROM (pg_catalog.clock_timestamp() - a.backend_start))::float8, COALESCE(a.datname::text, ''), a.state
FROM pg_catalog.pg_stat_activity a
WHERE a.usename::text = ANY($1::text[]) AND a.pid <> pg_catalog.pg_backend_pid() AND NOT (a.pid::int8 = ANY(COALESCE($2::int8[], '{}'::int8[])))
ORDER BY a.backend_start NULLS LAST, a.pid
LIMIT $3`

// Sessions lists the live sessions of the role's logins (both with strategy=alternating).
func (t *target) Sessions(ctx context.Context, env rotators.Env, cur rotators.Secret, limit int) (rotators.SessionList, error) {
	var list rotators.SessionList
	if cur == nil {
		return list, fmt.Errorf("no current credential to read the sessions with")
	}
	if limit < 1 {
		limit = 1
	}
	connURL, lim, err := t.authURL(env, cur)
	if err != nil {
		return list, err
	}
	srv, err := serverOf(t.cfg.urlTemplate)
	if err != nil {
		return list, err
	}
	own := ownPIDs(env.Resources, srv.hostPort())
	err = lim.withSession(ctx, env.Resources, connURL, func(ctx context.Context, conn *pgx.Conn) error {
		rows, err := conn.Query(ctx, activityQuery, t.cfg.usernames, own, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				s       rotators.Session
				addr    pgtype.Text
				port    pgtype.Int4
				started pgtype.Timestamptz
				age     pgtype.Float8
				state   pgtype.Text
			)
			if err := rows.Scan(&s.ID, &s.Account, &s.ApplicationName, &addr, &port, &started, &age, &s.Database, &state); err != nil {
				return err
			}
			if len(list.Sessions) == limit {
				list.Truncated = true
				continue
			}
			s.Current = s.Account == cur[PartUsername]
			s.ClientAddr, s.State = addr.String, state.String
			if port.Valid {
				s.ClientPort = int(port.Int32)
			}
			if started.Valid && age.Valid {
				s.Started = started.Time.UTC()
				s.Age = time.Duration(age.Float64 * float64(time.Second))
			} else {
				s.Hidden = true
				list.HiddenWhy = hiddenWhy
			}
			list.Sessions = append(list.Sessions, s)
		}
		return rows.Err()
	})
	if err != nil {
		return rotators.SessionList{}, fmt.Errorf("%w: reading the sessions of %s: %w", rotators.ErrUnreachable, t.cfg.usernamesField(), err)
	}
	return list, nil
}
