package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BenchmarkScaleSideBySide measures, in one run on one dev Vault and one PostgreSQL, the same
// work done by this plugin and by Vault's database engine (docs/benchmarks.md §6):
//  1. BENCH_SCALE_ROLES (1,000) rotations on demand from 8 concurrent clients, each engine twice,
//     alternating;
//  2. ours only: the same logins through one `rotate-many tag=...` job (max_parallel 4, then 8);
//  3. every login falling due at the same minute (`rotation_schedule`), ours at one minute and
//     theirs at the next: the time from that minute until PostgreSQL holds a new password for
//     every login.
func BenchmarkScaleSideBySide(b *testing.B) {
	n := envInt(b, "BENCH_SCALE_ROLES", 1000)
	const clients = 8
	b.ReportMetric(0, "ns/op") // the setup would dominate it; the figures are the metrics below
	s := newStack(b)
	ctx := context.Background()
	vc := s.Vault.Client.Logical()

	ours := make([]string, n)
	theirs := make([]string, n)
	for i := range ours {
		ours[i], theirs[i] = fmt.Sprintf("o%05d", i), fmt.Sprintf("t%05d", i)
	}
	const password = "scale-initial-password"
	verifier := scramVerifier(b, password)
	start := time.Now()
	execLong(b, s.Postgres, fmt.Sprintf(`CREATE ROLE bench_admin LOGIN CREATEROLE PASSWORD 'bench-admin-pw';
CREATE ROLE db_admin LOGIN CREATEROLE PASSWORD 'db-admin-pw';
DO $$
DECLARE stmt text;
BEGIN
  FOR stmt IN SELECT format('CREATE ROLE %%I LOGIN PASSWORD %%L', p || lpad(i::text, 5, '0'), %s)
      FROM generate_series(0, %d) AS i, (VALUES ('o'), ('t')) AS v(p) LOOP
    EXECUTE stmt;
  END LOOP;
END $$`, quoteLiteral(verifier), n-1))
	fmt.Printf("\n%d PostgreSQL logins created in %.1f s\n", 2*n, time.Since(start).Seconds())

	// Ours: one self-managed admin, n dependents imported with their current password. A yearly
	// schedule keeps them from falling due until part 3 moves it.
	const never = "0 0 1 1 *"
	s.writeAt(b, mount+"/roles/pg-admin", map[string]interface{}{
		"type": "postgres", "connection_url": s.Postgres.URLTemplate(), "username": "bench_admin", "password": "bench-admin-pw",
		"rotation_period": "2160h", "allowed_usernames": "o*",
	})
	start = time.Now()
	parallel(b, clients, ours, func(name string) error {
		_, err := vc.WriteWithContext(ctx, mount+"/roles/"+name, map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": name, "password": password,
			"rotation_schedule": never, "tags": "bench:scale",
		})
		return err
	})
	fmt.Printf("ours:   %d roles imported (each login verified) in %.1f s, %d clients\n", n, time.Since(start).Seconds(), clients)

	// Theirs: the database engine, one connection config, n static roles.
	s.databaseEngine(b)
	start = time.Now()
	parallel(b, clients, theirs, func(name string) error {
		_, err := vc.WriteWithContext(ctx, "database/static-roles/"+name, map[string]interface{}{
			"db_name": "pg", "username": name, "rotation_schedule": never,
		})
		return err
	})
	fmt.Printf("theirs: %d static roles created in %.1f s, %d clients\n\n", n, time.Since(start).Seconds(), clients)

	// 1. On demand, 8 clients, alternating engines.
	fmt.Printf("1. %d rotations on demand, %d concurrent clients (s)\n", n, clients)
	var oursBest, theirsBest time.Duration
	for round := 1; round <= 2; round++ {
		start = time.Now()
		parallel(b, clients, ours, func(name string) error {
			_, err := vc.WriteWithContext(ctx, mount+"/rotate/"+name, nil)
			return err
		})
		o := time.Since(start)
		start = time.Now()
		parallel(b, clients, theirs, func(name string) error {
			_, err := vc.WriteWithContext(ctx, "database/rotate-role/"+name, nil)
			return err
		})
		t := time.Since(start)
		fmt.Printf("   round %d: ours %.2f   theirs %.2f   ratio %.2f\n", round, o.Seconds(), t.Seconds(), o.Seconds()/t.Seconds())
		oursBest, theirsBest = minDur(oursBest, o), minDur(theirsBest, t)
	}
	b.ReportMetric(oursBest.Seconds(), "ours-ondemand-s")
	b.ReportMetric(theirsBest.Seconds(), "theirs-ondemand-s")

	// 2. Ours: one rotate-many job over the tag.
	fmt.Printf("2. rotate-many tag=bench:scale, %d roles, one job (s)\n", n)
	for _, width := range []int{4, 8} {
		s.writeAt(b, mount+"/config", map[string]interface{}{"max_parallel": width})
		start = time.Now()
		sec := s.writeAt(b, mount+"/rotate-many", map[string]interface{}{"tag": "bench:scale"})
		id, _ := sec.Data["job_id"].(string)
		if id == "" {
			b.Fatalf("rotate-many answered without a job: %v", sec.Data)
		}
		var failed int
		for {
			job, err := vc.ReadWithContext(ctx, mount+"/jobs/"+id)
			if err != nil {
				b.Fatal(err)
			}
			if job.Data["state"] == "done" {
				outs, _ := job.Data["outcomes"].([]interface{})
				for _, o := range outs {
					if o.(map[string]interface{})["outcome"] != "success" {
						failed++
					}
				}
				break
			}
			if time.Since(start) > 10*time.Minute {
				b.Fatalf("job %s still %v after 10 min", id, job.Data["state"])
			}
			time.Sleep(100 * time.Millisecond)
		}
		d := time.Since(start)
		if failed > 0 {
			b.Fatalf("rotate-many: %d of %d roles failed", failed, n)
		}
		fmt.Printf("   max_parallel %d: %.2f (ratio to theirs on demand, best round: %.2f)\n", width, d.Seconds(), d.Seconds()/theirsBest.Seconds())
		b.ReportMetric(d.Seconds(), fmt.Sprintf("ours-many%d-s", width))
	}
	s.writeAt(b, mount+"/config", map[string]interface{}{"max_parallel": 4})

	// 3. Everything due at one minute. Ours first; theirs at the minute after ours finished.
	if os.Getenv("BENCH_SCALE_SCHEDULE") == "0" {
		return
	}
	fmt.Printf("3. %d logins due at the same rotation_schedule minute: from that minute until PostgreSQL holds a new password for all (s)\n", n)
	oursDue := dueAll(b, s, ours, "o", func(cron string) {
		parallel(b, clients, ours, func(name string) error {
			_, err := vc.WriteWithContext(ctx, mount+"/roles/"+name, map[string]interface{}{"rotation_schedule": cron})
			return err
		})
	})
	theirsDue := dueAll(b, s, theirs, "t", func(cron string) {
		parallel(b, clients, theirs, func(name string) error {
			_, err := vc.WriteWithContext(ctx, "database/static-roles/"+name, map[string]interface{}{
				"db_name": "pg", "username": name, "rotation_schedule": cron,
			})
			return err
		})
	})
	fmt.Printf("   ours %.2f   theirs %.2f   ratio %.2f\n\n", oursDue.Seconds(), theirsDue.Seconds(), oursDue.Seconds()/theirsDue.Seconds())
	b.ReportMetric(oursDue.Seconds(), "ours-due-s")
	b.ReportMetric(theirsDue.Seconds(), "theirs-due-s")
}

// dueAll makes every login of prefix fall due at the next minute that leaves 20 s to write the
// schedules (schedule(cron) writes them), then waits until PostgreSQL holds a password other than
// the one each login had before, and answers how long after the due minute that was.
func dueAll(b *testing.B, s *stack, names []string, pgPrefix string, schedule func(cron string)) time.Duration {
	b.Helper()
	ctx := context.Background()
	execLong(b, s.Postgres, fmt.Sprintf(`DROP TABLE IF EXISTS bench_snap;
CREATE TABLE bench_snap AS SELECT rolname, rolpassword FROM pg_authid WHERE rolname LIKE '%s%%'`, pgPrefix))
	now := time.Now().UTC()
	due := now.Truncate(time.Minute).Add(time.Minute)
	if due.Sub(now) < 20*time.Second {
		due = due.Add(time.Minute)
	}
	schedule(fmt.Sprintf("%d * * * *", due.Minute()))
	if time.Now().After(due) {
		b.Fatalf("writing the schedules took past the due minute %s", due)
	}
	conn, err := pgx.Connect(ctx, s.Postgres.AdminDSN())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	time.Sleep(time.Until(due))
	for {
		var changed int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_authid a JOIN bench_snap s USING (rolname)
WHERE a.rolpassword IS DISTINCT FROM s.rolpassword`).Scan(&changed); err != nil {
			b.Fatal(err)
		}
		if changed == len(names) {
			return time.Since(due)
		}
		if time.Since(due) > 5*time.Minute {
			b.Fatalf("%d of %d logins rotated 5 min after they fell due", changed, len(names))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parallel runs fn for every name with width concurrent callers; the first error fails b.
func parallel(b *testing.B, width int, names []string, fn func(name string) error) {
	b.Helper()
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := 0; w < width; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) || firstErr.Load() != nil {
					return
				}
				if err := fn(names[i]); err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("%s: %w", names[i], err))
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		b.Fatal(err)
	}
}

func minDur(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}
