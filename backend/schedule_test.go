package backend

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestNextRotationPeriod(t *testing.T) {
	r := &Role{RotationPeriod: 24 * time.Hour, AutoRotate: true}
	last := mustTime(t, "2026-02-15T10:00:00Z")
	st := &State{LastRotated: last}
	want := last.Add(24 * time.Hour)
	if got := r.NextRotation(st, last); !got.Equal(want) {
		t.Fatalf("NextRotation = %v, want %v", got, want)
	}
	if r.IsDue(st, want.Add(-time.Second)) {
		t.Fatal("due a second early")
	}
	if !r.IsDue(st, want) || !r.IsDue(st, want.Add(time.Hour)) {
		t.Fatal("not due at or after the next rotation")
	}
}

func TestNextRotationSchedule(t *testing.T) {
	r := &Role{RotationSchedule: "0 0 1 1,4,7,10 *", AutoRotate: true}
	last := mustTime(t, "2026-02-15T00:00:00Z")
	st := &State{LastRotated: last}
	want := mustTime(t, "2026-04-01T00:00:00Z")
	if got := r.NextRotation(st, last); !got.Equal(want) {
		t.Fatalf("NextRotation = %v, want %v", got, want)
	}
	// Evaluated in UTC whatever the location of the inputs.
	ny, err := time.LoadLocation("America/New_York")
	if err == nil {
		if got := r.NextRotation(&State{LastRotated: last.In(ny)}, last.In(ny)); !got.Equal(want) {
			t.Fatalf("NextRotation from a New York time = %v, want %v", got, want)
		}
	}
	// Exactly on a scheduled time: the next one.
	if got := r.ScheduledAfter(want, want); !got.Equal(mustTime(t, "2026-07-01T00:00:00Z")) {
		t.Fatalf("ScheduledAfter(on time) = %v", got)
	}
	if r.IsDue(st, want.Add(-time.Minute)) || !r.IsDue(st, want) {
		t.Fatal("IsDue wrong around the scheduled time")
	}
	monthly := &Role{RotationSchedule: "0 0 1 * *", AutoRotate: true}
	if got := monthly.ScheduledAfter(mustTime(t, "2026-12-15T08:00:00Z"), time.Time{}); !got.Equal(mustTime(t, "2027-01-01T00:00:00Z")) {
		t.Fatalf("monthly after Dec 15 = %v", got)
	}
}

func TestNextRotationWindow(t *testing.T) {
	r := &Role{RotationSchedule: "0 0 1 * *", RotationWindow: time.Hour, AutoRotate: true}
	st := &State{LastRotated: mustTime(t, "2026-01-01T00:00:00Z")}
	feb1 := mustTime(t, "2026-02-01T00:00:00Z")
	// Inside the window: still Feb 1, due.
	inside := feb1.Add(30 * time.Minute)
	if got := r.NextRotation(st, inside); !got.Equal(feb1) || !r.IsDue(st, inside) {
		t.Fatalf("inside the window: next %v, due %v", got, r.IsDue(st, inside))
	}
	// The window has passed: skip to Mar 1, not due.
	after := feb1.Add(2 * time.Hour)
	if got := r.NextRotation(st, after); !got.Equal(mustTime(t, "2026-03-01T00:00:00Z")) || r.IsDue(st, after) {
		t.Fatalf("after the window: next %v, due %v", got, r.IsDue(st, after))
	}
	// Without a window, a late tick still rotates.
	r.RotationWindow = 0
	if !r.IsDue(st, after) {
		t.Fatal("no window: not due after the scheduled time")
	}
}

func TestNextRotationAutoRotateFailingRetry(t *testing.T) {
	last := mustTime(t, "2026-02-15T10:00:00Z")
	r := &Role{RotationPeriod: time.Hour, AutoRotate: false}
	st := &State{LastRotated: last}
	if got := r.NextRotation(st, last); !got.IsZero() || r.IsDue(st, last.Add(1000*time.Hour)) {
		t.Fatalf("auto_rotate=false: next %v", got)
	}
	r.AutoRotate = true
	st.Failing = true
	if got := r.NextRotation(st, last); !got.IsZero() || r.IsDue(st, last.Add(1000*time.Hour)) {
		t.Fatalf("failing: next %v", got)
	}
	st.Failing = false
	retry := last.Add(5 * time.Minute)
	st.RetryAt = retry
	if got := r.NextRotation(st, last); !got.Equal(retry) {
		t.Fatalf("RetryAt ignored: next %v", got)
	}
	if !r.IsDue(st, retry) || r.IsDue(st, retry.Add(-time.Second)) {
		t.Fatal("IsDue does not follow RetryAt")
	}
	// RetryAt overrides later times too.
	st.RetryAt = last.Add(3 * time.Hour)
	if r.IsDue(st, last.Add(2*time.Hour)) {
		t.Fatal("due on the schedule although a later retry is set")
	}
}

func TestParseSchedule(t *testing.T) {
	for _, ok := range []string{"0 0 1 1,4,7,10 *", "*/5 * * * *", "0 3 * * MON-FRI"} {
		if _, err := parseSchedule(ok); err != nil {
			t.Errorf("parseSchedule(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "* * * *", "0 0 0 1 * *", "@monthly", "61 * * * *", "0 25 * * *", "TZ=Europe/Paris 0 0 1 * *"} {
		if _, err := parseSchedule(bad); err == nil {
			t.Errorf("parseSchedule(%q) accepted", bad)
		}
	}
}

func TestDueQueue(t *testing.T) {
	q := newDueQueue()
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	q.set("c", at(30))
	q.set("a", at(10))
	q.set("b", at(20))
	q.set("d", at(40))
	q.set("zero", time.Time{}) // zero: not scheduled
	if q.len() != 4 {
		t.Fatalf("len = %d", q.len())
	}
	// Update: one entry per role.
	q.set("d", at(5))
	q.set("a", at(25))
	if q.len() != 4 || !q.queued("d").Equal(at(5)) {
		t.Fatalf("update: len %d, d at %v", q.len(), q.queued("d"))
	}
	// Remove.
	q.set("b", time.Time{})
	if q.len() != 3 || !q.queued("b").IsZero() {
		t.Fatal("remove failed")
	}
	if got := q.popDue(at(4)); len(got) != 0 {
		t.Fatalf("popDue before anything is due = %v", got)
	}
	if got := fmt.Sprint(q.popDue(at(30))); got != "[d a c]" {
		t.Fatalf("popDue = %s, want earliest first [d a c]", got)
	}
	if q.len() != 0 {
		t.Fatalf("len after pop = %d", q.len())
	}
	// Popped roles can be scheduled again.
	q.set("a", at(50))
	if got := q.popDue(at(50)); len(got) != 1 || got[0] != "a" {
		t.Fatalf("popDue = %v", got)
	}
}

func TestDueQueueManyRandomOrder(t *testing.T) {
	q := newDueQueue()
	n := 500
	for i := 0; i < n; i++ {
		// A permutation of minutes (7 is coprime with 500).
		q.set(fmt.Sprintf("r%d", i), t0.Add(time.Duration((i*7)%n+1)*time.Minute))
	}
	for i := 0; i < n; i += 3 {
		q.set(fmt.Sprintf("r%d", i), time.Time{})
	}
	got := q.popDue(t0.Add(time.Duration(n+1) * time.Minute))
	last := time.Time{}
	for _, name := range got {
		var i int
		fmt.Sscanf(name, "r%d", &i)
		if i%3 == 0 {
			t.Fatalf("removed role %s popped", name)
		}
		due := t0.Add(time.Duration((i*7)%n+1) * time.Minute)
		if due.Before(last) {
			t.Fatalf("popDue out of order at %s", name)
		}
		last = due
	}
	if want := n - (n+2)/3; len(got) != want {
		t.Fatalf("popped %d, want %d", len(got), want)
	}
}

// poolProbe runs jobs that block until released and records concurrency.
type poolProbe struct {
	g       gauge
	release chan struct{}
	mu      sync.Mutex
	ran     []job
}

func (p *poolProbe) run(ctx context.Context, j job) {
	p.g.Enter()
	defer p.g.Leave()
	select {
	case <-p.release:
	case <-ctx.Done():
	}
	p.mu.Lock()
	p.ran = append(p.ran, j)
	p.mu.Unlock()
}

func (p *poolProbe) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ran)
}

func TestWorkerPoolBoundedConcurrency(t *testing.T) {
	probe := &poolProbe{release: make(chan struct{})}
	pool := newWorkerPool(context.Background(), probe.run)
	defer pool.close()
	pool.resize(3)
	for i := 0; i < 10; i++ {
		pool.submit(job{name: fmt.Sprintf("r%d", i)})
	}
	eventually(t, "three jobs running", func() bool { return probe.g.Cur.Load() == 3 })
	if w := pool.waiting(); w != 7 {
		t.Fatalf("waiting = %d, want 7", w)
	}
	// Release jobs one at a time; never more than 3 at once.
	for i := 0; i < 10; i++ {
		probe.release <- struct{}{}
		if probe.g.Max.Load() > 3 {
			t.Fatalf("%d jobs ran at once", probe.g.Max.Load())
		}
	}
	eventually(t, "all jobs done", func() bool { return probe.count() == 10 })
	if probe.g.Max.Load() != 3 {
		t.Fatalf("max concurrency %d, want 3", probe.g.Max.Load())
	}
}

func TestWorkerPoolResize(t *testing.T) {
	probe := &poolProbe{release: make(chan struct{})}
	pool := newWorkerPool(context.Background(), probe.run)
	defer pool.close()
	// No workers yet: jobs wait.
	for i := 0; i < 6; i++ {
		pool.submit(job{name: fmt.Sprintf("r%d", i)})
	}
	if pool.waiting() != 6 || probe.g.Cur.Load() != 0 {
		t.Fatal("jobs ran without workers")
	}
	pool.resize(1)
	eventually(t, "one job running", func() bool { return probe.g.Cur.Load() == 1 })
	pool.resize(4)
	eventually(t, "four jobs running", func() bool { return probe.g.Cur.Load() == 4 })
	// Shrink to 2: running jobs finish, then at most 2 run.
	pool.resize(2)
	for i := 0; i < 4; i++ {
		probe.release <- struct{}{}
	}
	eventually(t, "the last two jobs running", func() bool { return probe.count() == 4 && probe.g.Cur.Load() == 2 })
	probe.g.Max.Store(0)
	probe.release <- struct{}{}
	probe.release <- struct{}{}
	eventually(t, "all done", func() bool { return probe.count() == 6 })
	// New jobs after the shrink run at most two at once.
	for i := 0; i < 5; i++ {
		pool.submit(job{name: fmt.Sprintf("s%d", i)})
	}
	eventually(t, "two running", func() bool { return probe.g.Cur.Load() == 2 })
	for i := 0; i < 5; i++ {
		probe.release <- struct{}{}
	}
	eventually(t, "all done", func() bool { return probe.count() == 11 })
	if m := probe.g.Max.Load(); m > 2 {
		t.Fatalf("%d jobs at once after resize(2)", m)
	}
	pool.mu.Lock()
	workers := pool.workers
	pool.mu.Unlock()
	if workers != 2 {
		t.Fatalf("%d workers after resize(2)", workers)
	}
}

func TestWorkerPoolDedupe(t *testing.T) {
	probe := &poolProbe{release: make(chan struct{})}
	pool := newWorkerPool(context.Background(), probe.run)
	defer pool.close()
	pool.submit(job{name: "a"})
	pool.submit(job{name: "a"})
	pool.submit(job{name: "a", recover: true})
	pool.submit(job{name: "b"})
	pool.submit(job{name: "a"})
	if w := pool.waiting(); w != 3 {
		t.Fatalf("waiting = %d, want 3 (a, a-recover, b)", w)
	}
	pool.resize(1)
	eventually(t, "a running", func() bool { return probe.g.Cur.Load() == 1 && pool.waiting() == 2 })
	// Once started, the same job may be queued again.
	pool.submit(job{name: "a"})
	if w := pool.waiting(); w != 3 {
		t.Fatalf("waiting = %d after resubmitting a running job", w)
	}
	close(probe.release)
	eventually(t, "all done", func() bool { return probe.count() == 4 })
	probe.mu.Lock()
	defer probe.mu.Unlock()
	if fmt.Sprint(probe.ran) != "[{a false} {a true} {b false} {a false}]" {
		t.Fatalf("ran %v, want FIFO order", probe.ran)
	}
}

func TestWorkerPoolCloseWaits(t *testing.T) {
	probe := &poolProbe{release: make(chan struct{})}
	pool := newWorkerPool(context.Background(), probe.run)
	pool.resize(2)
	pool.submit(job{name: "a"})
	pool.submit(job{name: "b"})
	pool.submit(job{name: "c"})
	eventually(t, "two running", func() bool { return probe.g.Cur.Load() == 2 })

	closed := make(chan struct{})
	go func() { pool.close(); close(closed) }()
	deadline := time.Now().Add(30 * time.Millisecond)
	for time.Now().Before(deadline) {
		select {
		case <-closed:
			t.Fatal("close returned while jobs were running")
		default:
		}
		time.Sleep(time.Millisecond)
	}
	close(probe.release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return")
	}
	if n := probe.count(); n != 2 {
		t.Fatalf("%d jobs ran; the waiting one must be dropped at close", n)
	}
	// A closed pool takes no more jobs.
	pool.submit(job{name: "d"})
	pool.resize(3)
	if pool.waiting() != 0 {
		t.Fatal("a closed pool queued a job")
	}
}

func TestWorkerPoolCloseCancels(t *testing.T) {
	// The engine cancels the jobs' context before closing: a blocked job returns.
	ctx, cancel := context.WithCancel(context.Background())
	probe := &poolProbe{release: make(chan struct{})}
	pool := newWorkerPool(ctx, probe.run)
	pool.resize(1)
	pool.submit(job{name: "a"})
	eventually(t, "running", func() bool { return probe.g.Cur.Load() == 1 })
	cancel()
	pool.close()
	if probe.count() != 1 {
		t.Fatal("job did not finish")
	}
}

func TestTickRotatesDueRolesOnly(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	targets := map[string]*faultTarget{}
	for _, r := range []struct {
		name   string
		period time.Duration
	}{{"hourly", time.Hour}, {"hourly2", time.Hour}, {"daily", 24 * time.Hour}} {
		period := r.period
		targets[r.name] = te.importRole(t, r.name, "pw-"+r.name, func(in *RoleInput) { in.RotationPeriod = &period })
	}
	te.importRole(t, "manual-only", "pw-manual", func(in *RoleInput) { in.AutoRotate = ptr(false) })
	if got := te.e.Stats().Scheduled; got != 4 {
		t.Fatalf("%d roles scheduled, want 4 (auto_rotate=false for its reminder only)", got)
	}

	// Not yet due: nothing happens.
	te.clock.Advance(59 * time.Minute)
	te.e.Tick(ctx)
	if te.e.Stats().Scheduled != 4 || te.e.Stats().Waiting != 0 {
		t.Fatalf("stats = %+v", te.e.Stats())
	}

	te.clock.Advance(time.Minute)
	if err := te.e.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"hourly", "hourly2"} {
		name := name
		eventually(t, name+" rotated", func() bool {
			st, _ := te.e.loadState(ctx, name)
			return st.Current().Number == 2
		})
		h := te.history(t, name)
		if len(h) != 1 || h[0].Trigger != TriggerSchedule || h[0].Outcome != OutcomeSuccess {
			t.Fatalf("%s history = %+v", name, h)
		}
		if !targets[name].Live().Equal(te.state(t, name).Current().Secret) {
			t.Fatalf("%s: target and Vault disagree", name)
		}
		if got := te.e.queue.queued(name); !got.Equal(te.clock.Now().Add(time.Hour)) {
			t.Fatalf("%s rescheduled at %v", name, got)
		}
	}
	for _, name := range []string{"daily", "manual-only"} {
		if st := te.state(t, name); st.Current().Number != 1 || len(te.history(t, name)) != 0 {
			t.Fatalf("%s rotated although not due", name)
		}
	}
	if got := te.e.queue.queued("daily"); !got.Equal(t0.Add(24 * time.Hour)) {
		t.Fatalf("daily scheduled at %v", got)
	}
}

func TestTickNeverWaitsAndBoundsConcurrency(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	cfg := te.e.Config()
	cfg.MaxParallel = 2
	if err := te.e.SetConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	g := &gauge{}
	gate := make(chan struct{})
	const n = 6
	for i := 0; i < n; i++ {
		ft := te.importRole(t, fmt.Sprintf("r%d", i), fmt.Sprintf("pw-r%d", i))
		ft.SetApplyGate(gate, g)
	}
	te.clock.Advance(time.Hour)

	tickDone := make(chan struct{})
	go func() { te.e.Tick(ctx); close(tickDone) }()
	select {
	case <-tickDone:
	case <-time.After(5 * time.Second):
		t.Fatal("Tick waited for the rotations")
	}
	eventually(t, "two rotations in apply", func() bool { return g.Cur.Load() == 2 })
	if w := te.e.Stats().Waiting; w != n-2 {
		t.Fatalf("waiting = %d, want %d", w, n-2)
	}
	// A second tick while they run queues no rotation twice; it only asks recovery to look at
	// the two pending records (which it leaves alone while their rotation holds the lock).
	te.e.Tick(ctx)
	pool := te.e.workers
	pool.mu.Lock()
	rotations, recoveries := 0, 0
	for _, j := range pool.fifo {
		if j.recover {
			recoveries++
		} else {
			rotations++
		}
	}
	pool.mu.Unlock()
	if rotations != n-2 || recoveries != 2 {
		t.Fatalf("after a second tick: %d rotation jobs, %d recovery jobs waiting", rotations, recoveries)
	}
	close(gate)
	var rotated atomic.Int32
	eventually(t, "all rotated", func() bool {
		rotated.Store(0)
		for i := 0; i < n; i++ {
			st, _ := te.e.loadState(ctx, fmt.Sprintf("r%d", i))
			if st.Current().Number == 2 {
				rotated.Add(1)
			}
		}
		return rotated.Load() == n
	})
	if m := g.Max.Load(); m != 2 {
		t.Fatalf("max concurrent rotations = %d, want 2", m)
	}
}

func TestTickRetriesFailedScheduledRotation(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "f", "pw-retry")
	ft.ScriptApply(applyFailBefore)
	te.clock.Advance(time.Hour)
	te.e.Tick(ctx)
	eventually(t, "failure recorded", func() bool { return len(te.history(t, "f")) == 1 })
	st := te.state(t, "f")
	if st.ConsecutiveFailures != 1 || st.RetryAt.IsZero() {
		t.Fatalf("state = %+v", st)
	}
	// Not retried before RetryAt, retried after.
	te.clock.Set(st.RetryAt.Add(-time.Second))
	te.e.Tick(ctx)
	if te.e.Stats().Waiting != 0 || len(te.history(t, "f")) != 1 {
		t.Fatal("retried before RetryAt")
	}
	te.clock.Set(st.RetryAt)
	te.e.Tick(ctx)
	eventually(t, "retry succeeded", func() bool {
		s, _ := te.e.loadState(ctx, "f")
		return s.Current().Number == 2
	})
	if st := te.state(t, "f"); st.ConsecutiveFailures != 0 || !st.RetryAt.IsZero() {
		t.Fatalf("state after the retry = %+v", st)
	}
}

func TestTickNotWriteSafe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state consts.ReplicationState
		local bool
	}{
		{"performance standby", consts.ReplicationPerformanceStandby, false},
		{"DR secondary", consts.ReplicationDRSecondary, false},
		{"performance secondary", consts.ReplicationPerformanceSecondary, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			ctx := context.Background()
			ft := te.importRole(t, "r", "pw-standby")
			te.putPending(t, "p", &Pending{})
			te.sys.ReplicationStateVal = tc.state
			te.sys.LocalMountVal = tc.local
			te.clock.Advance(2 * time.Hour)
			if err := te.e.Tick(ctx); err != nil {
				t.Fatal(err)
			}
			if st := te.e.Stats(); st.Scheduled != 1 || st.Waiting != 0 {
				t.Fatalf("stats = %+v: the tick touched the schedule", st)
			}
			if ft.Applies() != 0 || len(te.history(t, "r")) != 0 {
				t.Fatal("rotated on a node that must not write")
			}
			// Write-safe again: the next tick rotates.
			te.sys.ReplicationStateVal = 0
			te.e.Tick(ctx)
			eventually(t, "rotation", func() bool { return ft.Applies() == 1 })
		})
	}
	// A local mount on a performance secondary may write.
	te := newEnv(t, func(s *logical.StaticSystemView) {
		s.ReplicationStateVal = consts.ReplicationPerformanceSecondary
		s.LocalMountVal = true
	})
	if !te.e.writeSafe() {
		t.Fatal("a local mount on a performance secondary is write-safe")
	}
}

func TestInitializeRebuildsSchedule(t *testing.T) {
	te := newEnv(t)
	te.importRole(t, "a", "pw-a", func(in *RoleInput) { in.RotationPeriod = ptr(2 * time.Hour) })
	te.importRole(t, "b", "pw-b", func(in *RoleInput) {
		in.RotationPeriod = nil
		in.RotationSchedule = ptr("0 0 1 1,4,7,10 *")
	})
	te.importRole(t, "c", "pw-c", func(in *RoleInput) { in.AutoRotate = ptr(false) })
	te.e.Close()

	te2 := newEnvOn(t, te.storage, te.clock)
	if got := te2.e.queue.queued("a"); !got.Equal(t0.Add(2 * time.Hour)) {
		t.Fatalf("a at %v", got)
	}
	if got := te2.e.queue.queued("b"); !got.Equal(mustTime(t, "2026-04-01T00:00:00Z")) {
		t.Fatalf("b at %v", got)
	}
	// c is never rotated by the schedule, but it is queued for its due reminder.
	if te2.e.Stats().Scheduled != 3 || te2.e.queue.queued("c").IsZero() {
		t.Fatalf("stats = %+v, c at %v", te2.e.Stats(), te2.e.queue.queued("c"))
	}
}

func TestCloseStopsBackgroundWork(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	ft := te.importRole(t, "r", "pw-close")
	gate := make(chan struct{}) // never released: only the cancelled context ends the apply
	ft.SetApplyGate(gate, nil)
	te.clock.Advance(time.Hour)
	te.e.Tick(ctx)
	eventually(t, "rotation running", func() bool { return te.pendingRec(t, "r") != nil })
	done := make(chan struct{})
	go func() { te.e.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not cancel the running rotation")
	}
	// The cancelled apply failed; the old value is still live.
	if !ft.Live().Equal(secretOf("pw-close")) {
		t.Fatal("target changed")
	}
}
