package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// TestRotateMany: the guide's "employee departure": every role tagged owner:alice rotates at
// once through the real Vault and PostgreSQL; one role whose health check fails rolls back
// alone; past the inline bound the answer is a job; a dry run changes nothing; without sudo the
// path is refused.
func TestRotateMany(t *testing.T) {
	t.Parallel()
	s := newDevStack(t)
	s.ImportAdmin(t, "pg-admin", "many_admin", "many-admin-pw")
	const n = 20
	for i := 0; i < n; i++ {
		user := fmt.Sprintf("many_%02d", i)
		s.CreateLogin(t, user, "pw-"+user, "")
		role := map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": user, "password": "pw-" + user,
			"rotation_period": "2160h", "tags": "owner:alice",
		}
		if i == 7 {
			// Its consumers never come back: the rotation rolls back.
			role["health_checks"], role["health_timeout"] = "tcp://127.0.0.1:1", "1s"
		}
		if i >= n-2 {
			role["tags"] = "owner:bob"
		}
		s.Write(t, fmt.Sprintf("roles/many-%02d", i), role)
	}

	dry := s.Write(t, "rotate-many", map[string]interface{}{"tag": "owner:alice", "dry_run": true})
	if roles, _ := dry.Data["roles"].([]interface{}); len(roles) != n-2 || dry.Data["job_id"] != nil {
		t.Fatalf("dry run: %v", dry.Data)
	}
	s.AssertLogin(t, "many_00", "pw-many_00", true)

	small := s.Write(t, "rotate-many", map[string]interface{}{"glob": "many-1*", "dry_run": false, "roles": nil})
	if outs, _ := small.Data["outcomes"].([]interface{}); len(outs) != 10 {
		t.Fatalf("inline rotate-many of many-1*: %v", small.Data)
	}

	sec := s.Write(t, "rotate-many", map[string]interface{}{"tag": "owner:alice"})
	id, _ := sec.Data["job_id"].(string)
	if id == "" {
		t.Fatalf("%d roles answered inline: %v", n-2, sec.Data)
	}
	var job map[string]interface{}
	testenv.Eventually(t, "the job is done", 60*time.Second, func() error {
		job = s.Read(t, "jobs/"+id).Data
		if job["state"] != "done" {
			return fmt.Errorf("state %v", job["state"])
		}
		return nil
	})
	outs, _ := job["outcomes"].([]interface{})
	if len(outs) != n-2 {
		t.Fatalf("job outcomes: %v", job)
	}
	for _, o := range outs {
		m := o.(map[string]interface{})
		role := m["role"].(string)
		want := "success"
		if role == "many-07" {
			want = "failed"
		}
		if m["outcome"] != want {
			t.Fatalf("%s: %v, want %s", role, m, want)
		}
		user, pw, _ := s.Creds(t, role)
		s.AssertLogin(t, user, pw, true)
	}
	s.AssertLogin(t, "many_07", "pw-many_07", true) // rolled back alone
	// owner:bob: rotated once by the glob many-1*, not by the tag.
	if user, pw, v := s.Creds(t, "many-19"); v != 2 {
		t.Fatalf("many-19 at version %d, want 2", v)
	} else {
		s.AssertLogin(t, user, pw, true)
	}
	s.AssertNoSecretIn(t, "job", testenv.JSONOf(t, job))

	// rotate-many acts across roles whatever per-role policies say: sudo only.
	if err := s.Vault.Client.Sys().PutPolicy("many-no-sudo", `path "rotation/rotate-many" { capabilities = ["update"] }
path "rotation/jobs/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	c := s.PolicyClient(t, "many-no-sudo")
	if _, err := c.Logical().Write(mount+"/rotate-many", map[string]interface{}{"glob": "*", "dry_run": true}); !isForbidden(err) {
		t.Fatalf("rotate-many without sudo: %v, want 403", err)
	}
	if _, err := c.Logical().Read(mount + "/jobs/" + id); !isForbidden(err) {
		t.Fatalf("a job read without sudo: %v, want 403", err)
	}
	_, re := s.WriteErr("rotate-many", map[string]interface{}{"tag": "x", "glob": "*"})
	testenv.ExpectStatus(t, re, http.StatusBadRequest, "give exactly one")
}

// TestRotateManyJobInterrupted kills Vault (and with it the plugin) while a rotate-many job has
// one role between ALTER ROLE and promotion and the others waiting. After the restart the job
// reads "interrupted" and every role is resolved: the one in flight rolled forward by recovery
// (its new password is live), the others untouched at version 1; every creds logs in.
func TestRotateManyJobInterrupted(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "failpoint-reached")
	s := &stack{testenv.NewStack(t, testenv.StackOptions{Storage: testenv.StorageFile, Postgres: true, PluginTags: "failpoints",
		PluginEnv: []string{"ROTATION_FAILPOINT=after-apply=5m", "ROTATION_FAILPOINT_MARKER=" + marker}})}
	v := s.Vault
	s.Write(t, "config", map[string]interface{}{"max_parallel": 1}) // one role at a time, in name order
	s.ImportAdmin(t, "pg-admin", "mj_admin", "mj-admin-pw")
	const n = 20 // more than answer inline
	for i := 0; i < n; i++ {
		user := fmt.Sprintf("mj_%02d", i)
		s.CreateLogin(t, user, "pw-"+user, "")
		s.Write(t, fmt.Sprintf("roles/mj-%02d", i), map[string]interface{}{
			"type": "postgres", "admin_role": "pg-admin", "username": user, "password": "pw-" + user,
			"rotation_period": "2160h", "tags": "team:mj",
		})
	}
	sec := s.Write(t, "rotate-many", map[string]interface{}{"tag": "team:mj"})
	id, _ := sec.Data["job_id"].(string)
	if id == "" {
		t.Fatalf("no job: %v", sec.Data)
	}
	testenv.Eventually(t, "the first role of the job stops after ALTER ROLE", time.Minute, func() error {
		_, err := os.Stat(marker)
		return err
	})
	s.AssertLogin(t, "mj_00", "pw-mj_00", false) // PostgreSQL already holds its new password
	v.Kill(t)
	v.Restart(t)

	var job map[string]interface{}
	testenv.Eventually(t, "the interrupted job reports every role resolved", 2*time.Minute, func() error {
		sec, err := v.Client.Logical().ReadWithContext(context.Background(), mount+"/jobs/"+id)
		if err != nil || sec == nil {
			return fmt.Errorf("read job: %v", err)
		}
		job = sec.Data
		outs, _ := job["outcomes"].([]interface{})
		if job["state"] != "interrupted" || len(outs) != n {
			return fmt.Errorf("state %v, %d outcomes", job["state"], len(outs))
		}
		if d, _ := outs[0].(map[string]interface{})["detail"].(string); !strings.Contains(d, "resolved it") {
			return fmt.Errorf("the role in flight: %q", d)
		}
		return nil
	})
	for i, o := range job["outcomes"].([]interface{}) {
		m := o.(map[string]interface{})
		role := fmt.Sprintf("mj-%02d", i)
		want, detail := 1, "no outcome recorded"
		if i == 0 {
			want, detail = 2, "resolved it: version 2 is current"
		}
		if m["role"] != role || m["outcome"] != "interrupted" || testenv.IntOf(t, m["version"]) != want || !strings.Contains(fmt.Sprint(m["detail"]), detail) {
			t.Fatalf("job outcome %d: %v, want %s interrupted at version %d (%s)", i, m, role, want, detail)
		}
		user, pw, version := s.Creds(t, role)
		if version != want {
			t.Fatalf("%s at version %d, want %d", role, version, want)
		}
		s.AssertLogin(t, user, pw, true)
		if s.Read(t, "roles/"+role).Data["pending"] != false {
			t.Fatalf("%s keeps a pending record", role)
		}
	}
	s.AssertNoSecretIn(t, "interrupted job", testenv.JSONOf(t, job))
}
