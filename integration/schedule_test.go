package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestScheduledRotation shows rotation from Vault's periodic function with no request: a due
// role rotates on each tick; a role whose rotations fail is parked as failing after
// max_failures, is not retried by later ticks, and is scheduled again once written.
// Vault calls the periodic function about once a minute, so this test takes a few minutes.
func TestScheduledRotation(t *testing.T) {
	t.Parallel()
	s := newConsumerStack(t)
	s.Write(t, "config", map[string]interface{}{"max_failures": 1, "retry_base": "1s", "retry_max": "2s"})
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	s.ImportAdmin(t, "broken-admin", "broken_admin", "broken-pw")
	s.CreateLogin(t, "ticker", "ticker-0", "")
	s.CreateLogin(t, "parked", "parked-0", "")
	s.Write(t, "roles/ticker", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "ticker",
		"connection_url": s.Postgres.URLTemplate(), "rotation_period": "5s",
	})
	s.Write(t, "roles/parked", map[string]interface{}{
		"type": "postgres", "admin_role": "broken-admin", "username": "parked",
		"connection_url": s.Postgres.URLTemplate(), "rotation_period": "5s",
	})
	_, parkedPW, _ := s.Creds(t, "parked")
	// The ticker's consumer follows scheduled rotations too.
	svc := s.RunDemo(t, "ticker", testenv.DemoOptions{})
	s.Write(t, "roles/ticker", map[string]interface{}{"consumers": "docker:" + svc.Name, "health_checks": svc.URL("/health")})
	// The admin loses its right to change passwords: every rotation of parked now fails.
	s.Postgres.Exec(t, `ALTER ROLE broken_admin NOCREATEROLE`)

	// The role's current_version moves at promotion (creds already hands out a value staged
	// for the consumers during deploy).
	tickerVersion := func() int { return testenv.IntOf(t, s.Read(t, "roles/ticker").Data["current_version"]) }
	waitTick := func(after int) int {
		var v int
		testenv.Eventually(t, "a periodic tick rotates the due role", 150*time.Second, func() error {
			if v = tickerVersion(); v <= after {
				return fmt.Errorf("ticker still at version %d", v)
			}
			return nil
		})
		return v
	}

	v := waitTick(1)
	_, pw, _ := s.Creds(t, "ticker")
	s.AssertLogin(t, "ticker", pw, true)
	hist := s.Read(t, "history/ticker").Data["history"].([]interface{})
	if h := hist[0].(map[string]interface{}); h["trigger"] != "schedule" || len(h["consumers"].([]interface{})) != 1 {
		t.Fatalf("history: %s", testenv.JSONOf(t, hist[0]))
	}
	if got := demoStartedWith(t, svc); got.Version < v {
		t.Fatalf("the consumer runs version %d after the scheduled rotation to %d", got.Version, v)
	}

	testenv.Eventually(t, "the failing role is parked", 150*time.Second, func() error {
		role := s.Read(t, "roles/parked").Data
		if role["failing"] != true {
			return fmt.Errorf("failing=%v consecutive_failures=%v", role["failing"], role["consecutive_failures"])
		}
		return nil
	})
	parked := s.Read(t, "roles/parked").Data
	if testenv.IntOf(t, parked["consecutive_failures"]) != 1 || parked["next_rotation"] != nil {
		t.Fatalf("parked role: %#v", parked)
	}
	s.AssertLogin(t, "parked", parkedPW, true) // the failed rotations left the old password live

	// Another tick passes: a parked role is not retried.
	waitTick(v + 1)
	if n := testenv.IntOf(t, s.Read(t, "roles/parked").Data["consecutive_failures"]); n != 1 {
		t.Fatalf("a parked role was retried: %d consecutive failures", n)
	}

	// The operator repairs the admin and writes the role: the schedule takes it again.
	s.Postgres.Exec(t, `ALTER ROLE broken_admin CREATEROLE`)
	s.Write(t, "roles/parked", map[string]interface{}{"rotation_period": "5s"})
	if s.Read(t, "roles/parked").Data["failing"] != false {
		t.Fatal("writing the role did not clear failing")
	}
	testenv.Eventually(t, "the repaired role rotates on schedule", 150*time.Second, func() error {
		_, pw, version := s.Creds(t, "parked")
		if version < 2 {
			return fmt.Errorf("parked still at version %d", version)
		}
		return s.Postgres.CanLogin("parked", pw)
	})
}

// TestSchedulePrecision: a role starts rotating within 5 s of its due time (issue 11: the
// periodic function, about once a minute, is only the heartbeat; a timer is armed for the
// earliest due time), exactly once per due time. Two roles: a cron schedule that fires every
// minute, and a 5 s rotation_period whose next due time counts from the last rotation.
func TestSchedulePrecision(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.ImportAdmin(t, "pg-admin", "sp_admin", "sp-admin-pw")
	for _, u := range []string{"sp_cron", "sp_period"} {
		s.CreateLogin(t, u, "pw-"+u, "")
	}
	created := time.Now().UTC()
	s.Write(t, "roles/cron", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "sp_cron",
		"password": "pw-sp_cron", "rotation_schedule": "* * * * *"})
	s.Write(t, "roles/period", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "sp_period",
		"password": "pw-sp_period", "rotation_period": "5s"})

	scheduled := func(role string) []time.Time {
		var at []time.Time
		for _, h := range s.Read(t, "history/"+role).Data["history"].([]interface{}) {
			m := h.(map[string]interface{})
			if m["trigger"] != "schedule" {
				continue
			}
			if m["outcome"] != "success" {
				t.Fatalf("%s: scheduled rotation failed: %s", role, testenv.JSONOf(t, m))
			}
			ts, err := time.Parse(time.RFC3339Nano, m["time"].(string))
			if err != nil {
				t.Fatalf("%s: history time %v: %v", role, m["time"], err)
			}
			at = append([]time.Time{ts}, at...) // oldest first
		}
		return at
	}
	const precision = 5 * time.Second

	// The cron role: due at the first minute boundary after it was written.
	due := created.Truncate(time.Minute).Add(time.Minute)
	testenv.Eventually(t, "the cron role rotates at its minute", time.Until(due)+30*time.Second, func() error {
		if len(scheduled("cron")) == 0 {
			return fmt.Errorf("no scheduled rotation yet (due %s)", due.Format(time.TimeOnly))
		}
		return nil
	})
	time.Sleep(precision) // a second run for the same due time would show up by now
	runs := scheduled("cron")
	if len(runs) != 1 {
		t.Fatalf("cron role: %d scheduled rotations for the due time %s: %v", len(runs), due, runs)
	}
	if late := runs[0].Sub(due); late < 0 || late > precision {
		t.Fatalf("cron role due %s rotated at %s (%s late), want within %s", due.Format(time.TimeOnly), runs[0].Format(time.TimeOnly), late, precision)
	}
	_, pw, version := s.Creds(t, "cron")
	s.AssertLogin(t, "sp_cron", pw, true)
	if version != 2 {
		t.Fatalf("cron role at version %d after one scheduled rotation", version)
	}

	// The period role has been rotating every 5 s meanwhile: each run within 5 s of the last
	// one's due time (last run + period).
	period := scheduled("period")
	if len(period) < 3 {
		t.Fatalf("period role: %d scheduled rotations in %s with a 5 s period", len(period), time.Since(created).Round(time.Second))
	}
	// History times are taken as each run ends, the due time counts from its promotion: a gap
	// may fall short of 5 s by the difference of two runs' last steps.
	const jitter = time.Second
	for i := 1; i < len(period); i++ {
		gap := period[i].Sub(period[i-1])
		if gap < 5*time.Second-jitter || gap > 5*time.Second+precision {
			t.Fatalf("period role: rotation %d came %s after the previous one, want 5 s to %s; all: %v", i, gap, 5*time.Second+precision, period)
		}
	}
	_, pw, _ = s.Creds(t, "period")
	s.AssertLogin(t, "sp_period", pw, true)
}
