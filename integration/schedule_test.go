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
