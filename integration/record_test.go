package integration

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// hook is a real HTTP receiver for the plugin's notifications.
type hook struct {
	mu   sync.Mutex
	docs []map[string]interface{}
	raw  []string
	url  string
}

func startHook(t *testing.T) *hook {
	t.Helper()
	h := &hook{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var doc map[string]interface{}
		if err := json.Unmarshal(body, &doc); err != nil {
			http.Error(w, "not JSON", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.docs = append(h.docs, doc)
		h.raw = append(h.raw, string(body))
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	h.url = "http://" + ln.Addr().String() + "/hook"
	return h
}

// find returns the documents of role with event.
func (h *hook) find(role, event string) []map[string]interface{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]interface{}
	for _, d := range h.docs {
		if d["role"] == role && d["event"] == event {
			out = append(out, d)
		}
	}
	return out
}

func (h *hook) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.raw, "\n")
}

// TestRecord covers issue 5 on a real Vault: history with the requester, the status inventory,
// the detailed list, webhook notifications, and events that never fail or slow a rotation on
// Vault CE (which accepts them but has no subscription endpoint).
func TestRecord(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	h := startHook(t)
	s.Write(t, "config", map[string]interface{}{"notify_url": h.url, "max_failures": 1})
	// notify_url is write-only: a read shows its scheme and host, never its path.
	if got, want := s.Read(t, "config").Data["notify_url"], strings.TrimSuffix(h.url, "/hook")+" (set)"; got != want {
		t.Fatalf("config notify_url = %v, want %v", got, want)
	}
	configNeedsSudo(t, s)
	s.ImportAdmin(t, "pg-admin", "oa_admin", "admin-pw")
	s.CreateLogin(t, "app", "app-0", "")
	s.Write(t, "roles/app", map[string]interface{}{
		"type": "postgres", "admin_role": "pg-admin", "username": "app",
		"connection_url": s.Postgres.URLTemplate(), "rotation_schedule": "0 0 1 1,4,7,10 *",
	})
	s.Write(t, "roles/telegram", map[string]interface{}{"type": "token", "value": "123:abc", "auto_rotate": false, "rotation_period": "5s"})
	s.Remember("123:abc")

	// A manual rotation records who asked.
	self, err := s.Vault.Client.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatal(err)
	}
	s.Write(t, "rotate/app", nil)
	entry := s.Read(t, "history/app").Data["history"].([]interface{})[0].(map[string]interface{})
	by, _ := entry["requested_by"].(map[string]interface{})
	if by == nil || by["accessor"] != self.Data["accessor"] {
		t.Fatalf("history requested_by = %v, want accessor %v", entry["requested_by"], self.Data["accessor"])
	}
	for _, k := range []string{"time", "trigger", "outcome", "version_before", "version_after", "steps"} {
		if entry[k] == nil {
			t.Fatalf("history entry lacks %s: %s", k, testenv.JSONOf(t, entry))
		}
	}

	testenv.Eventually(t, "success notification", 10*time.Second, func() error {
		if len(h.find("app", "success")) == 0 {
			return errorf("none yet: %s", h.all())
		}
		return nil
	})
	doc := h.find("app", "success")[0]
	for _, k := range []string{"event", "role", "type", "version", "outcome", "time"} {
		if doc[k] == nil {
			t.Fatalf("notification lacks %s: %v", k, doc)
		}
	}

	// A failure: the admin lost its right to change passwords. max_failures=1 parks the role.
	s.Postgres.Exec(t, `ALTER ROLE oa_admin NOCREATEROLE`)
	_, re := s.WriteErr("rotate/app", nil)
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "failed at apply")
	s.Postgres.Exec(t, `ALTER ROLE oa_admin CREATEROLE`)
	testenv.Eventually(t, "failure and parked notifications", 10*time.Second, func() error {
		if len(h.find("app", "failure")) == 0 || len(h.find("app", "parked")) == 0 {
			return errorf("got: %s", h.all())
		}
		return nil
	})

	// The manual-only token passes its period: the status shows it overdue, first.
	testenv.Eventually(t, "telegram overdue", 15*time.Second, func() error {
		if s.Read(t, "roles/telegram").Data["overdue"] != true {
			return errorf("not yet")
		}
		return nil
	})
	status := s.Read(t, "status").Data
	rows := status["roles"].([]interface{})
	if len(rows) != 3 || testenv.IntOf(t, status["total"]) != 3 || testenv.IntOf(t, status["overdue"]) < 1 {
		t.Fatalf("status: %s", testenv.JSONOf(t, status))
	}
	first := rows[0].(map[string]interface{})
	if first["name"] != "telegram" || first["overdue"] != true || first["auto_rotate"] != false {
		t.Fatalf("most overdue first: %s", testenv.JSONOf(t, rows))
	}
	for _, r := range rows {
		row := r.(map[string]interface{})
		for _, k := range []string{"type", "last_rotated", "age_seconds", "next_rotation", "overdue", "auto_rotate", "last_outcome", "consecutive_failures"} {
			if _, ok := row[k]; !ok {
				t.Fatalf("status row lacks %s: %s", k, testenv.JSONOf(t, row))
			}
		}
		if row["name"] == "app" && (row["failing"] != true || testenv.IntOf(t, row["consecutive_failures"]) != 1 || row["last_outcome"] != "failed") {
			t.Fatalf("app row: %s", testenv.JSONOf(t, row))
		}
	}

	list, err := s.Vault.Client.Logical().List(mount + "/roles")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := list.Data["key_info"].(map[string]interface{})
	if app, _ := info["app"].(map[string]interface{}); app == nil || app["type"] != "postgres" || app["last_outcome"] != "failed" {
		t.Fatalf("list key_info: %s", testenv.JSONOf(t, list.Data))
	}

	// Every document and the server log are free of secrets.
	s.Creds(t, "app")
	s.Creds(t, "pg-admin")
	s.AssertNoSecretIn(t, "the notifications", h.all())
	s.AssertNoSecretIn(t, "the Vault server log", s.Vault.ServerLog(t))
	// Rotations are in the server log (scheduled ones are not API requests, so this is where
	// they show besides history, events and notifications).
	if log := s.Vault.ServerLog(t); !strings.Contains(log, "rotated:") || !strings.Contains(log, "role=app") {
		t.Fatal("the server log does not record the rotations")
	}
}

// configNeedsSudo: rotation/config is a root path. A token whose policy grants create, read and
// update on it, but not sudo, is refused both ways; with sudo it may read and write.
func configNeedsSudo(t *testing.T, s *stack) {
	t.Helper()
	root := s.Vault.Client
	as := func(name, caps string) *api.Client {
		t.Helper()
		if err := root.Sys().PutPolicy(name, `path "`+mount+`/config" { capabilities = [`+caps+`] }`); err != nil {
			t.Fatal(err)
		}
		sec, err := root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{name}, NoDefaultPolicy: true})
		if err != nil {
			t.Fatal(err)
		}
		c, err := root.Clone()
		if err != nil {
			t.Fatal(err)
		}
		c.SetToken(sec.Auth.ClientToken)
		return c
	}
	noSudo := as("config-no-sudo", `"create", "read", "update"`)
	if _, err := noSudo.Logical().Read(mount + "/config"); !isForbidden(err) {
		t.Fatalf("read without sudo: %v, want 403", err)
	}
	if _, err := noSudo.Logical().Write(mount+"/config", map[string]interface{}{"max_failures": 1}); !isForbidden(err) {
		t.Fatalf("write without sudo: %v, want 403", err)
	}
	sudo := as("config-sudo", `"create", "read", "update", "sudo"`)
	if _, err := sudo.Logical().Read(mount + "/config"); err != nil {
		t.Fatalf("read with sudo: %v", err)
	}
	if _, err := sudo.Logical().Write(mount+"/config", map[string]interface{}{"max_failures": 1}); err != nil {
		t.Fatalf("write with sudo: %v", err)
	}
}

func isForbidden(err error) bool {
	re, ok := err.(*api.ResponseError)
	return ok && re.StatusCode == http.StatusForbidden
}
