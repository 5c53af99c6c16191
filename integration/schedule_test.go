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
	s.write(t, "config", map[string]interface{}{"max_failures": 1, "retry_base": "1s", "retry_max": "2s"})
	s.importAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	s.importAdmin(t, "broken-admin", "broken_admin", "broken-pw")
	s.createLogin(t, "ticker", "ticker-0", "")
	s.createLogin(t, "parked", "parked-0", "")
	s.write(t, "roles/ticker", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "ticker",
		"connection_url": s.pg.URLTemplate(), "rotation_period": "5s",
	})
	s.write(t, "roles/parked", map[string]interface{}{
		"type": "postgres", "admin_role": "broken-admin", "username": "parked",
		"connection_url": s.pg.URLTemplate(), "rotation_period": "5s",
	})
	_, parkedPW, _ := s.creds(t, "parked")
	// The ticker's consumer follows scheduled rotations too.
	svc := s.demo(t, "ticker", testenv.DemoOptions{})
	s.write(t, "roles/ticker", map[string]interface{}{"consumers": "docker:" + svc.Name, "health_checks": svc.URL("/health")})
	// The admin loses its right to change passwords: every rotation of parked now fails.
	s.pg.Exec(t, `ALTER ROLE broken_admin NOCREATEROLE`)

	// The role's current_version moves at promotion (creds already hands out a value staged
	// for the consumers during deploy).
	tickerVersion := func() int { return intOf(t, s.read(t, "roles/ticker").Data["current_version"]) }
	waitTick := func(after int) int {
		var v int
		eventually(t, "a periodic tick rotates the due role", 150*time.Second, func() error {
			if v = tickerVersion(); v <= after {
				return fmt.Errorf("ticker still at version %d", v)
			}
			return nil
		})
		return v
	}

	v := waitTick(1)
	_, pw, _ := s.creds(t, "ticker")
	s.assertLogin(t, "ticker", pw, true)
	hist := s.read(t, "history/ticker").Data["history"].([]interface{})
	if h := hist[0].(map[string]interface{}); h["trigger"] != "schedule" || len(h["consumers"].([]interface{})) != 1 {
		t.Fatalf("history: %s", jsonOf(t, hist[0]))
	}
	if got := demoStartedWith(t, svc); got.Version < v {
		t.Fatalf("the consumer runs version %d after the scheduled rotation to %d", got.Version, v)
	}

	eventually(t, "the failing role is parked", 150*time.Second, func() error {
		role := s.read(t, "roles/parked").Data
		if role["failing"] != true {
			return fmt.Errorf("failing=%v consecutive_failures=%v", role["failing"], role["consecutive_failures"])
		}
		return nil
	})
	parked := s.read(t, "roles/parked").Data
	if intOf(t, parked["consecutive_failures"]) != 1 || parked["next_rotation"] != nil {
		t.Fatalf("parked role: %#v", parked)
	}
	s.assertLogin(t, "parked", parkedPW, true) // the failed rotations left the old password live

	// Another tick passes: a parked role is not retried.
	waitTick(v + 1)
	if n := intOf(t, s.read(t, "roles/parked").Data["consecutive_failures"]); n != 1 {
		t.Fatalf("a parked role was retried: %d consecutive failures", n)
	}

	// The operator repairs the admin and writes the role: the schedule takes it again.
	s.pg.Exec(t, `ALTER ROLE broken_admin CREATEROLE`)
	s.write(t, "roles/parked", map[string]interface{}{"rotation_period": "5s"})
	if s.read(t, "roles/parked").Data["failing"] != false {
		t.Fatal("writing the role did not clear failing")
	}
	eventually(t, "the repaired role rotates on schedule", 150*time.Second, func() error {
		_, pw, version := s.creds(t, "parked")
		if version < 2 {
			return fmt.Errorf("parked still at version %d", version)
		}
		return s.pg.CanLogin("parked", pw)
	})
}

// TestSchedulePrecision: a role starts rotating within 5 s of its due time (issue 11: the
// periodic function, about once a minute, is only the heartbeat; a timer is armed for the
// earliest due time), exactly once per due time. Two roles: a cron schedule that fires every
// minute, and a 5 s rotation_period whose next due time counts from the last rotation.
func TestSchedulePrecision(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.importAdmin(t, "pg-admin", "sp_admin", "sp-admin-pw")
	for _, u := range []string{"sp_cron", "sp_period"} {
		s.createLogin(t, u, "pw-"+u, "")
	}
	created := time.Now().UTC()
	s.write(t, "roles/cron", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "sp_cron",
		"password": "pw-sp_cron", "rotation_schedule": "* * * * *"})
	s.write(t, "roles/period", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "sp_period",
		"password": "pw-sp_period", "rotation_period": "5s"})

	scheduled := func(role string) []time.Time {
		var at []time.Time
		for _, h := range s.read(t, "history/"+role).Data["history"].([]interface{}) {
			m := h.(map[string]interface{})
			if m["trigger"] != "schedule" {
				continue
			}
			if m["outcome"] != "success" {
				t.Fatalf("%s: scheduled rotation failed: %s", role, jsonOf(t, m))
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
	eventually(t, "the cron role rotates at its minute", time.Until(due)+30*time.Second, func() error {
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
	_, pw, version := s.creds(t, "cron")
	s.assertLogin(t, "sp_cron", pw, true)
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
	_, pw, _ = s.creds(t, "period")
	s.assertLogin(t, "sp_period", pw, true)
}
