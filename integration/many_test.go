package integration

import (
	"fmt"
	"net/http"
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
