package backend

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRotateManySelection(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	tag := func(tags ...string) func(*RoleInput) { return func(in *RoleInput) { in.Tags = &tags } }
	te.importRole(t, "team-a-db", "pw-1", tag("owner:alice", "team:a"))
	te.importRole(t, "team-a-api", "pw-2", tag("owner:bob"))
	te.importRole(t, "team-b-db", "pw-3", tag("owner:alice"))

	for _, tc := range []struct {
		req  ManyRequest
		want []string
	}{
		{ManyRequest{Tag: "owner:alice"}, []string{"team-a-db", "team-b-db"}},
		{ManyRequest{Glob: "team-a-*"}, []string{"team-a-api", "team-a-db"}},
		{ManyRequest{Glob: "*-db"}, []string{"team-a-db", "team-b-db"}},
		{ManyRequest{Glob: "*"}, []string{"team-a-api", "team-a-db", "team-b-db"}},
		{ManyRequest{Roles: []string{"team-b-db", "team-a-api", "team-b-db"}}, []string{"team-a-api", "team-b-db"}},
		{ManyRequest{Tag: "owner:nobody"}, nil},
	} {
		tc.req.DryRun = true
		res, err := te.e.RotateMany(ctx, tc.req)
		if err != nil || !reflect.DeepEqual(res.Roles, tc.want) || res.Outcomes != nil {
			t.Fatalf("%+v: %v %v, want %v", tc.req, res, err, tc.want)
		}
	}
	for _, tc := range []struct {
		req  ManyRequest
		want string
	}{
		{ManyRequest{}, "tag, roles or glob: give exactly one"},
		{ManyRequest{Tag: "x", Glob: "*"}, "give exactly one"},
		{ManyRequest{Roles: []string{"nope"}}, `roles: role "nope" does not exist`},
		{ManyRequest{Roles: []string{"../x"}}, "roles: name"},
		{ManyRequest{Tag: "a,b"}, "tag:"},
	} {
		_, err := te.e.RotateMany(ctx, tc.req)
		wantUserError(t, err, tc.want)
	}
	// A dry run rotated nothing.
	for _, n := range []string{"team-a-db", "team-a-api", "team-b-db"} {
		if v := te.state(t, n).Current().Number; v != 1 {
			t.Fatalf("%s at version %d after dry runs", n, v)
		}
	}
}

// TestRotateManyFailingRoleAlone: one role among many fails and rolls back; the others rotate.
func TestRotateManyFailingRoleAlone(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	var bad *faultTarget
	for i := 0; i < 5; i++ {
		ft := te.importRole(t, fmt.Sprintf("r%d", i), fmt.Sprintf("pw-%d", i), func(in *RoleInput) { in.Tags = &[]string{"batch"} })
		if i == 2 {
			bad = ft
		}
	}
	bad.ScriptApply(applyFailBefore)
	res, err := te.e.RotateMany(ctx, ManyRequest{Tag: "batch"})
	if err != nil || res.JobID != "" || len(res.Outcomes) != 5 {
		t.Fatalf("rotate-many = %+v, %v", res, err)
	}
	for i, o := range res.Outcomes {
		want := OutcomeSuccess
		if i == 2 {
			want = OutcomeFailed
		}
		if o.Role != fmt.Sprintf("r%d", i) || o.Result != want {
			t.Fatalf("outcome %d = %+v, want %s", i, o, want)
		}
		if v := te.state(t, o.Role).Current().Number; (i == 2) != (v == 1) {
			t.Fatalf("%s at version %d", o.Role, v)
		}
	}
	if got := bad.Live(); !got.Equal(secretOf("pw-2")) {
		t.Fatalf("the failing role's target holds %v", got)
	}
}

// TestRotateManyJob: past ManyInline roles the answer is a job, which ends done with every
// role's outcome; a job a process left running is reported as interrupted by the next start.
func TestRotateManyJob(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	te := newEnvOn(t, storage, clock)
	ctx := context.Background()
	n := ManyInline + 3
	for i := 0; i < n; i++ {
		te.importRole(t, fmt.Sprintf("j%02d", i), fmt.Sprintf("pw-%d", i), func(in *RoleInput) { in.Tags = &[]string{"job"} })
	}
	res, err := te.e.RotateMany(ctx, ManyRequest{Tag: "job"})
	if err != nil || res.JobID == "" || res.Outcomes != nil || len(res.Roles) != n {
		t.Fatalf("rotate-many = %+v, %v", res, err)
	}
	var job *Job
	deadline := time.Now().Add(10 * time.Second)
	for {
		if job, err = te.e.ReadJob(ctx, res.JobID); err != nil {
			t.Fatal(err)
		}
		if job.State == JobDone || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if job.State != JobDone || len(job.Outcomes) != n {
		t.Fatalf("job %+v", job)
	}
	for _, o := range job.Outcomes {
		if o.Result != OutcomeSuccess || o.Version != 2 {
			t.Fatalf("job outcome %+v", o)
		}
	}
	if ids, err := te.e.ListJobs(ctx); err != nil || len(ids) != 1 || ids[0] != res.JobID {
		t.Fatalf("jobs %v %v", ids, err)
	}
	if _, err := te.e.ReadJob(ctx, "../x"); !IsUserError(err) {
		t.Fatalf("a bad job id: %v", err)
	}

	// A record left running by a process that stopped: the next start reports it interrupted.
	left := &Job{ID: "0b9f8a52-3c8e-4c45-9d3e-6f0f4c1d2e3a", State: JobRunning, Created: clock.Now(),
		Outcomes: []ManyOutcome{{Role: "j00", Result: OutcomeSuccess, Version: 3}, {Role: "j01", Result: "pending"}}}
	if err := te.e.putJob(ctx, left); err != nil {
		t.Fatal(err)
	}
	again := newEnvOn(t, storage, clock)
	got, err := again.e.ReadJob(ctx, left.ID)
	if err != nil || got.State != JobInterrupted || got.Outcomes[0].Result != OutcomeSuccess || got.Outcomes[1].Result != JobInterrupted {
		t.Fatalf("after a restart: %+v, %v", got, err)
	}
}

// TestJobRecordBounded: a job of the most roles, each failing with the longest error, still fits
// one storage entry (raft's default max_entry_size is 1 MiB).
func TestJobRecordBounded(t *testing.T) {
	j := &Job{ID: "00000000-0000-0000-0000-000000000000", State: JobRunning, Created: t0}
	for i := 0; i < MaxManyRoles; i++ {
		j.Outcomes = append(j.Outcomes, ManyOutcome{Role: strings.Repeat("r", maxRoleNameLen), Result: OutcomeFailed,
			Version: 1 << 20, FailedStep: "redeploying", Error: cappedTo(strings.Repeat("\u00e9", 5000), maxJobErrorText)})
	}
	entry, err := logical.StorageEntryJSON(jobPrefix+j.ID, j)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(entry.Value); n > 1<<20 {
		t.Fatalf("the largest job record takes %d bytes, more than one 1 MiB storage entry", n)
	}
}

// TestOneJobAtATime: while a job runs, another request that would start one is refused.
func TestOneJobAtATime(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	gate := make(chan struct{})
	var first *faultTarget
	for i := 0; i < ManyInline+1; i++ {
		ft := te.importRole(t, fmt.Sprintf("q%02d", i), "pw", func(in *RoleInput) { in.Tags = &[]string{"q"} })
		if i == 0 {
			first = ft
		}
	}
	g := &gauge{}
	first.SetApplyGate(gate, g)
	res, err := te.e.RotateMany(ctx, ManyRequest{Tag: "q"})
	if err != nil || res.JobID == "" {
		t.Fatalf("first job: %+v %v", res, err)
	}
	eventually(t, "the first job holds a rotation", func() bool { return g.Cur.Load() > 0 })
	_, err = te.e.RotateMany(ctx, ManyRequest{Tag: "q"})
	wantUserError(t, err, "a rotate-many job is running")
	// A selection small enough to answer inline is not a job: it may run.
	if _, err := te.e.RotateMany(ctx, ManyRequest{Roles: []string{"q05"}}); err != nil {
		t.Fatalf("an inline rotate-many while a job runs: %v", err)
	}
	close(gate)
	eventually(t, "the job ends", func() bool {
		j, err := te.e.ReadJob(ctx, res.JobID)
		return err == nil && j.State == JobDone
	})
}

// TestInterruptedJobResolvesEveryRole: a job left running by a process that stopped reports every
// role it had not reported: one never started keeps its version; one that was mid-rotation is
// reported once recovery has resolved its pending record, with the version then current.
func TestInterruptedJobResolvesEveryRole(t *testing.T) {
	storage := &logical.InmemStorage{}
	clock := newClock(t0)
	te := newEnvOn(t, storage, clock)
	ctx := context.Background()
	te.importRole(t, "k0", "pw-k0")
	crashed(t, te, "k1", "pw-crash-new") // the new value reached the target before the stop
	left := &Job{ID: "5d0c7f3e-8a41-4b6e-9c7d-2f3e4a5b6c7d", State: JobRunning, Created: clock.Now(),
		Outcomes: []ManyOutcome{{Role: "k0", Result: "pending"}, {Role: "k1", Result: "pending"}, {Role: "k2", Result: OutcomeSuccess, Version: 4}}}
	if err := te.e.putJob(ctx, left); err != nil {
		t.Fatal(err)
	}

	again := newEnvOn(t, storage, clock)
	var got *Job
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if got, err = again.e.ReadJob(ctx, left.ID); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(got.Outcomes[1].Detail, "resolved") || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got.State != JobInterrupted {
		t.Fatalf("job state %q", got.State)
	}
	k0, k1, k2 := got.Outcomes[0], got.Outcomes[1], got.Outcomes[2]
	if k0.Result != JobInterrupted || k0.Version != 1 || !strings.Contains(k0.Detail, "no outcome recorded") {
		t.Fatalf("the role never started: %+v", k0)
	}
	if k1.Result != JobInterrupted || k1.Version != 2 || !strings.Contains(k1.Detail, "resolved it: version 2 is current") {
		t.Fatalf("the role in flight: %+v", k1)
	}
	if k2.Result != OutcomeSuccess || k2.Version != 4 || k2.Detail != "" {
		t.Fatalf("a reported role changed: %+v", k2)
	}
	if again.pendingRec(t, "k1") != nil {
		t.Fatal("the in-flight role's pending record is still there")
	}
	if cur := again.state(t, "k1").Current(); cur == nil || cur.Number != 2 || cur.Secret["password"] != "pw-crash-new" {
		t.Fatalf("k1 current: %+v", cur)
	}
	for _, o := range got.Outcomes {
		if strings.Contains(o.Detail, "pw-") {
			t.Fatalf("a value in the job record: %+v", o)
		}
	}
}
