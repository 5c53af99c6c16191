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
