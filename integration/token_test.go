package integration

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
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
		sec, err := s.Vault.Client.Logical().ReadWithContext(r.Context(), mount+"/creds/"+role)
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
		s.Write(t, "roles/svc", map[string]interface{}{
			"type": "token", "format": "base64url", "bytes": 32, "prefix": "svc_", "rotation_period": "2160h",
		})
		v1 := s.Read(t, "creds/svc").Data["value"].(string)
		s.Write(t, "rotate/svc", nil)
		v2 := s.Read(t, "creds/svc").Data["value"].(string)
		s.Remember(v1, v2)
		if !strings.HasPrefix(v1, "svc_") || len(v1) != 4+43 || v1 == v2 {
			t.Fatalf("tokens %d chars, changed %v", len(v1), v1 != v2)
		}
		if got := s.Read(t, "creds/svc", "version", "1").Data["value"]; got != v1 {
			t.Fatal("creds version=1 does not return the first token")
		}
		s.Write(t, "rollback/svc", nil)
		if got := s.Read(t, "creds/svc").Data["value"]; got != v1 {
			t.Fatal("rollback did not bring the first token back")
		}
		if role := s.Read(t, "roles/svc").Data; role["value"] != nil || strings.Contains(testenv.JSONOf(t, role), v1) {
			t.Fatal("role read shows the token")
		}
	})

	t.Run("third-party token supplied by the operator, checked, rolled back when refused", func(t *testing.T) {
		s.Write(t, "roles/telegram", map[string]interface{}{
			"type": "token", "value": "111:old-bot-token", "auto_rotate": false, "rotation_period": "2160h",
		})
		p := startProvider(t, s, "telegram")
		p.issue("111:old-bot-token")
		s.Write(t, "roles/telegram", map[string]interface{}{"health_checks": p.url, "health_timeout": "3s"})

		// The provider issued the new token: the rotation runs the whole protocol with it.
		p.issue("222:new-bot-token")
		rot := s.Write(t, "rotate/telegram", map[string]interface{}{"value": "222:new-bot-token"})
		if testenv.IntOf(t, rot.Data["version"]) != 2 || rot.Data["health_checks"] == nil {
			t.Fatalf("rotate: %s", testenv.JSONOf(t, rot.Data))
		}
		if got := s.Read(t, "creds/telegram").Data["value"]; got != "222:new-bot-token" {
			t.Fatal("creds does not return the supplied token")
		}

		// A token the provider does not accept (a typo when pasting it) rolls back.
		_, re := s.WriteErr("rotate/telegram", map[string]interface{}{"value": "333:typo"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at deploy")
		if got := s.Read(t, "creds/telegram").Data["value"]; got != "222:new-bot-token" {
			t.Fatal("a refused token became current")
		}
		h := s.Read(t, "history/telegram").Data["history"].([]interface{})[0].(map[string]interface{})
		if h["rolled_back"] != true || strings.Contains(testenv.JSONOf(t, h), "333:typo") {
			t.Fatalf("history: %s", testenv.JSONOf(t, h))
		}

		_, re = s.WriteErr("rotate/telegram", map[string]interface{}{"value": "222:new-bot-token"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "value: equal to the current value")
		_, re = s.WriteErr("rotate/telegram", map[string]interface{}{"value": ""})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "value")
	})

	t.Run("a manual-only token is reported overdue instead of rotated", func(t *testing.T) {
		s.Write(t, "roles/github", map[string]interface{}{
			"type": "token", "value": "ghp_initial", "auto_rotate": false, "rotation_period": "5s",
		})
		testenv.Eventually(t, "overdue", 15*time.Second, func() error {
			role := s.Read(t, "roles/github").Data
			if role["overdue"] != true {
				return errorf("overdue=%v due_at=%v", role["overdue"], role["due_at"])
			}
			if role["next_rotation"] != nil || testenv.IntOf(t, role["current_version"]) != 1 {
				return errorf("a manual-only role is scheduled: %#v", role)
			}
			return nil
		})
	})

	t.Run("bad input", func(t *testing.T) {
		s.CreateLogin(t, "tok_pg", "tok-pg-pw", "")
		s.Write(t, "roles/tok-pg", map[string]interface{}{
			"type": "postgres", "username": "tok_pg", "password": "tok-pg-pw",
			"connection_url": s.Postgres.URLTemplate(), "rotation_period": "720h",
		})
		_, re := s.WriteErr("rotate/tok-pg", map[string]interface{}{"value": "x"})
		testenv.ExpectStatus(t, re, http.StatusBadRequest, "value: a postgres role does not take a supplied value")
		for field, data := range map[string]map[string]interface{}{
			"bytes":    {"bytes": 4},
			"format":   {"format": "base32"},
			"value":    {"value": "with space"},
			"username": {"username": "x"},
		} {
			data["type"], data["rotation_period"] = "token", "720h"
			_, re := s.WriteErr("roles/bad-token", data)
			testenv.ExpectStatus(t, re, http.StatusBadRequest, field)
		}
	})
}
