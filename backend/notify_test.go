package backend

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// receiver is a real HTTP webhook endpoint that records what it is sent.
type receiver struct {
	mu    sync.Mutex
	docs  []Notification
	raw   []string
	fails int           // answer 500 to this many requests first
	block chan struct{} // when set, requests wait for it
	srv   *httptest.Server
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		block := r.block
		r.mu.Unlock()
		if block != nil {
			<-block
		}
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.fails > 0 {
			r.fails--
			http.Error(w, "try later", http.StatusInternalServerError)
			return
		}
		var n Notification
		if err := json.Unmarshal(body, &n); err != nil || req.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad document", http.StatusBadRequest)
			return
		}
		r.docs = append(r.docs, n)
		r.raw = append(r.raw, string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, d := range r.docs {
		out = append(out, d.Event)
	}
	return out
}

func (r *receiver) waitFor(t *testing.T, want ...string) []Notification {
	t.Helper()
	eventually(t, "notifications "+strings.Join(want, ","), func() bool { return strings.Join(r.events(), ",") == strings.Join(want, ",") })
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Notification(nil), r.docs...)
}

// recordingSender is an event sender that records what the engine sends (Vault CE has no
// subscription endpoint to observe events on a real server).
type recordingSender struct {
	mu     sync.Mutex
	events []*logical.EventReceived
	types  []string
}

func (s *recordingSender) SendEvent(_ context.Context, eventType logical.EventType, ev *logical.EventData) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.types = append(s.types, string(eventType))
	s.events = append(s.events, &logical.EventReceived{EventType: string(eventType), Event: ev})
	return nil
}

func (s *recordingSender) snapshot() ([]string, []*logical.EventReceived) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.types...), append([]*logical.EventReceived(nil), s.events...)
}

func withNotify(t *testing.T, te *testEnv, url string, mod func(*Config)) {
	t.Helper()
	te.e.notify.wait = func(time.Duration) {}
	c := te.e.Config()
	c.NotifyURL = url
	if mod != nil {
		mod(&c)
	}
	if err := te.e.SetConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func TestNotificationsForEveryOutcome(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	rcv := newReceiver(t)
	withNotify(t, te, rcv.srv.URL+"/hook", func(c *Config) { c.MaxFailures = 2 })
	ft := te.importRole(t, "app", "pw-initial")

	if out, err := te.e.Rotate(ctx, "app"); err != nil || !out.Success {
		t.Fatalf("rotate: %+v %v", out, err)
	}
	docs := rcv.waitFor(t, NotifySuccess)
	if d := docs[0]; d.Role != "app" || d.Type != faultType || d.Version != 2 || d.VersionBefore != 1 || d.Trigger != TriggerManual || d.Outcome != OutcomeSuccess || d.Time.IsZero() {
		t.Fatalf("success document: %+v", d)
	}

	ft.ScriptApply(applyFailBefore)
	te.e.Rotate(ctx, "app")
	rcv.waitFor(t, NotifySuccess, NotifyFailure)

	// Verify fails after the value changed: the old one is put back, a rollback; and it is the
	// second failure in a row, so the role is parked.
	ft.ScriptVerify(verifyReject)
	out, _ := te.e.Rotate(ctx, "app")
	if !out.RolledBack {
		t.Fatalf("outcome %+v", out)
	}
	docs = rcv.waitFor(t, NotifySuccess, NotifyFailure, NotifyRollback, NotifyParked)
	if docs[2].FailedStep != StepVerify || docs[2].Error == "" || docs[3].Role != "app" {
		t.Fatalf("documents %+v", docs)
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, raw := range rcv.raw {
		for _, v := range te.state(t, "app").Versions {
			if strings.Contains(raw, v.Secret["password"]) {
				t.Fatalf("a notification holds a secret: %s", raw)
			}
		}
	}
}

func TestDueReminderOncePerPeriod(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	rcv := newReceiver(t)
	withNotify(t, te, rcv.srv.URL, nil)
	te.importRole(t, "telegram", "bot-token", func(in *RoleInput) {
		in.AutoRotate = ptr(false)
		in.RotationPeriod = ptr(24 * time.Hour)
	})
	te.clock.Advance(23 * time.Hour)
	te.e.Tick(ctx)
	time.Sleep(20 * time.Millisecond)
	if len(rcv.events()) != 0 {
		t.Fatalf("reminded before due: %v", rcv.events())
	}
	te.clock.Advance(2 * time.Hour)
	te.e.Tick(ctx)
	docs := rcv.waitFor(t, NotifyDue)
	if docs[0].Role != "telegram" || docs[0].Version != 1 {
		t.Fatalf("due document %+v", docs[0])
	}
	// Still overdue an hour later: no second reminder within the period.
	te.clock.Advance(time.Hour)
	te.e.Tick(ctx)
	time.Sleep(20 * time.Millisecond)
	if got := rcv.events(); len(got) != 1 {
		t.Fatalf("reminded twice in one period: %v", got)
	}
	// A period after the first reminder: the next one.
	te.clock.Advance(24 * time.Hour)
	te.e.Tick(ctx)
	rcv.waitFor(t, NotifyDue, NotifyDue)
	if st := te.state(t, "telegram"); st.Current().Number != 1 {
		t.Fatal("a manual-only role was rotated by the schedule")
	}
}

func TestNotificationDeliveryRetriesAndNeverBlocks(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	rcv := newReceiver(t)
	rcv.fails = 2 // two 500s, then the third attempt is taken
	withNotify(t, te, rcv.srv.URL, nil)
	te.importRole(t, "app", "pw")
	te.e.Rotate(ctx, "app")
	rcv.waitFor(t, NotifySuccess)

	// A receiver that does not answer does not hold a rotation up.
	rcv.mu.Lock()
	rcv.block = make(chan struct{})
	rcv.mu.Unlock()
	done := make(chan struct{})
	go func() {
		te.e.Rotate(ctx, "app")
		te.e.Rotate(ctx, "app")
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(4 * time.Second):
		t.Fatal("rotations waited for the webhook")
	}
	close(rcv.block)
	rcv.waitFor(t, NotifySuccess, NotifySuccess, NotifySuccess)
}

func TestNotificationGivesUpAfterBoundedAttempts(t *testing.T) {
	te := newEnv(t)
	rcv := newReceiver(t)
	rcv.fails = notifyAttempts + 1
	withNotify(t, te, rcv.srv.URL, nil)
	te.importRole(t, "app", "pw")
	te.e.Rotate(context.Background(), "app")
	eventually(t, "the attempts are spent", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.fails == 1
	})
	eventually(t, "a warning is logged", func() bool { return strings.Contains(te.logs.String(), "notification not delivered") })
	if len(rcv.events()) != 0 {
		t.Fatal("delivered although every attempt failed")
	}
}

func TestVaultEvents(t *testing.T) {
	sender := &recordingSender{}
	storage := &logical.InmemStorage{}
	e := New(&logical.BackendConfig{StorageView: storage, System: &logical.StaticSystemView{}, EventsSender: sender})
	clock := newClock(t0)
	e.SetClock(clock)
	if err := e.Initialize(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	te := &testEnv{e: e, storage: storage, clock: clock, logs: &syncBuffer{}}
	ctx := context.Background()
	ft := te.importRole(t, "app", "pw")
	e.Rotate(ctx, "app")
	ft.ScriptApply(applyFailBefore)
	e.Rotate(ctx, "app")
	ft.ScriptVerify(verifyReject)
	e.Rotate(ctx, "app")
	e.Rollback(ctx, "app", 0)
	want := []string{EventRotate, EventRotateFail, EventRotateFail, EventRollback, EventRollback}
	eventually(t, "events", func() bool { types, _ := sender.snapshot(); return len(types) == len(want) })
	types, events := sender.snapshot()
	count := map[string]int{}
	for _, ty := range types {
		count[ty]++
	}
	if count[EventRotate] != 1 || count[EventRotateFail] != 2 || count[EventRollback] != 2 {
		t.Fatalf("event types %v", types)
	}
	for _, ev := range events {
		md := ev.Event.Metadata.AsMap()
		if md["role"] != "app" || md["type"] != faultType || md["trigger"] == "" || md["outcome"] == "" {
			t.Fatalf("metadata %v", md)
		}
		if strings.Contains(ev.Event.Metadata.String(), "pw") {
			t.Fatalf("an event carries a secret: %v", md)
		}
	}
}
