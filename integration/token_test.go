package integration

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// provider stands in for a third-party API (Telegram, GitHub): it accepts only the tokens it
// has issued. Its /health reads the role's current token from Vault, as a service would at
// start, and answers 200 only if the provider accepts it.
type provider struct {
	mu     sync.Mutex
	issued map[string]bool
	url    string
}

func startProvider(t *testing.T, s *stack, role string) *provider {
	t.Helper()
	p := &provider{issued: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sec, err := s.vault.Client.Logical().ReadWithContext(r.Context(), mount+"/creds/"+role)
		if err != nil || sec == nil {
			http.Error(w, "cannot read the token", http.StatusServiceUnavailable)
			return
		}
		tok, _ := sec.Data["value"].(string)
		p.mu.Lock()
		ok := p.issued[tok]
		p.mu.Unlock()
		if !ok {
			http.Error(w, "401 from the provider: token not valid", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	p.url = "http://" + ln.Addr().String() + "/health"
	return p
}

func (p *provider) issue(tokens ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range tokens {
		p.issued[t] = true
	}
}

func TestTokenRotation(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)

	t.Run("generated service token", func(t *testing.T) {
		s.write(t, "roles/svc", map[string]interface{}{
			"type": "token", "format": "base64url", "bytes": 32, "prefix": "svc_", "rotation_period": "2160h",
		})
		v1 := s.read(t, "creds/svc").Data["value"].(string)
		s.write(t, "rotate/svc", nil)
		v2 := s.read(t, "creds/svc").Data["value"].(string)
		s.remember(v1, v2)
		if !strings.HasPrefix(v1, "svc_") || len(v1) != 4+43 || v1 == v2 {
			t.Fatalf("tokens %d chars, changed %v", len(v1), v1 != v2)
		}
		if got := s.read(t, "creds/svc", "version", "1").Data["value"]; got != v1 {
			t.Fatal("creds version=1 does not return the first token")
		}
		s.write(t, "rollback/svc", nil)
		if got := s.read(t, "creds/svc").Data["value"]; got != v1 {
			t.Fatal("rollback did not bring the first token back")
		}
		if role := s.read(t, "roles/svc").Data; role["value"] != nil || strings.Contains(jsonOf(t, role), v1) {
			t.Fatal("role read shows the token")
		}
	})

	t.Run("third-party token supplied by the operator, checked, rolled back when refused", func(t *testing.T) {
		s.write(t, "roles/telegram", map[string]interface{}{
			"type": "token", "value": "111:old-bot-token", "auto_rotate": false, "rotation_period": "2160h",
		})
		p := startProvider(t, s, "telegram")
		p.issue("111:old-bot-token")
		s.write(t, "roles/telegram", map[string]interface{}{"health_checks": p.url, "health_timeout": "3s"})

		// The provider issued the new token: the rotation runs the whole protocol with it.
		p.issue("222:new-bot-token")
		rot := s.write(t, "rotate/telegram", map[string]interface{}{"value": "222:new-bot-token"})
		if intOf(t, rot.Data["version"]) != 2 || rot.Data["health_checks"] == nil {
			t.Fatalf("rotate: %s", jsonOf(t, rot.Data))
		}
		if got := s.read(t, "creds/telegram").Data["value"]; got != "222:new-bot-token" {
			t.Fatal("creds does not return the supplied token")
		}

		// A token the provider does not accept (a typo when pasting it) rolls back.
		_, re := s.writeErr("rotate/telegram", map[string]interface{}{"value": "333:typo"})
		expectStatus(t, re, http.StatusBadRequest, "failed at deploy")
		if got := s.read(t, "creds/telegram").Data["value"]; got != "222:new-bot-token" {
			t.Fatal("a refused token became current")
		}
		h := s.read(t, "history/telegram").Data["history"].([]interface{})[0].(map[string]interface{})
		if h["rolled_back"] != true || strings.Contains(jsonOf(t, h), "333:typo") {
			t.Fatalf("history: %s", jsonOf(t, h))
		}

		_, re = s.writeErr("rotate/telegram", map[string]interface{}{"value": "222:new-bot-token"})
		expectStatus(t, re, http.StatusBadRequest, "value: equal to the current value")
		_, re = s.writeErr("rotate/telegram", map[string]interface{}{"value": ""})
		expectStatus(t, re, http.StatusBadRequest, "value")
	})

	t.Run("a manual-only token is reported overdue instead of rotated", func(t *testing.T) {
		s.write(t, "roles/github", map[string]interface{}{
			"type": "token", "value": "ghp_initial", "auto_rotate": false, "rotation_period": "5s",
		})
		eventually(t, "overdue", 15*time.Second, func() error {
			role := s.read(t, "roles/github").Data
			if role["overdue"] != true {
				return errorf("overdue=%v due_at=%v", role["overdue"], role["due_at"])
			}
			if role["next_rotation"] != nil || intOf(t, role["current_version"]) != 1 {
				return errorf("a manual-only role is scheduled: %#v", role)
			}
			return nil
		})
	})

	t.Run("bad input", func(t *testing.T) {
		s.createLogin(t, "tok_pg", "tok-pg-pw", "")
		s.write(t, "roles/tok-pg", map[string]interface{}{
			"type": "postgres", "username": "tok_pg", "password": "tok-pg-pw",
			"connection_url": s.pg.URLTemplate(), "rotation_period": "720h",
		})
		_, re := s.writeErr("rotate/tok-pg", map[string]interface{}{"value": "x"})
		expectStatus(t, re, http.StatusBadRequest, "value: a postgres role does not take a supplied value")
		for field, data := range map[string]map[string]interface{}{
			"bytes":    {"bytes": 4},
			"format":   {"format": "base32"},
			"value":    {"value": "with space"},
			"username": {"username": "x"},
		} {
			data["type"], data["rotation_period"] = "token", "720h"
			_, re := s.writeErr("roles/bad-token", data)
			expectStatus(t, re, http.StatusBadRequest, field)
		}
	})
}
