package backend

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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

// secretURLParts are the parts of a bearer-style notify_url that must never be logged.
var secretURLParts = []string{"hook-path-SECRET", "query-SECRET", "user-SECRET", "pass-SECRET"}

func assertNoURLSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, p := range secretURLParts {
		if strings.Contains(text, p) {
			t.Fatalf("%s holds %q of notify_url: %s", what, p, text)
		}
	}
}

// withSecrets turns a receiver's base URL into a bearer-style one: user info, path and query.
func withSecrets(base string) string {
	return strings.Replace(base, "://", "://user-SECRET:pass-SECRET@", 1) + "/hook-path-SECRET?token=query-SECRET"
}

func TestNotifyURLNeverLogged(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(t *testing.T) string
		want string // in the log's error
	}{
		{"receiver answers 500", func(t *testing.T) string {
			rcv := newReceiver(t)
			rcv.fails = 100
			return rcv.srv.URL
		}, "HTTP 500"},
		{"connection refused", func(t *testing.T) string {
			srv := httptest.NewServer(http.NotFoundHandler())
			srv.Close()
			return srv.URL
		}, "connection refused"},
		{"receiver never answers", func(t *testing.T) string {
			stop := make(chan struct{})
			srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stop }))
			t.Cleanup(srv.Close)
			t.Cleanup(func() { close(stop) })
			return srv.URL
		}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			te := newEnv(t)
			te.e.notify.client.Timeout = 200 * time.Millisecond
			base := tc.url(t)
			withNotify(t, te, withSecrets(base), nil)
			te.importRole(t, "app", "pw")
			te.e.Rotate(context.Background(), "app")
			eventually(t, "a warning is logged", func() bool { return strings.Contains(te.logs.String(), "notification not delivered") })
			logs := te.logs.String()
			assertNoURLSecret(t, "the log", logs)
			if !strings.Contains(logs, tc.want) || !strings.Contains(logs, "target="+base) {
				t.Fatalf("the log does not say what failed (%s) and where (%s): %s", tc.want, base, logs)
			}
		})
	}
}

func TestNotifyURLErrorsDoNotEchoIt(t *testing.T) {
	c := DefaultConfig()
	c.NotifyURL = "ftp://user-SECRET:pass-SECRET@x/hook-path-SECRET?token=query-SECRET"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "notify_url:") {
		t.Fatalf("Validate: %v", err)
	}
	assertNoURLSecret(t, "the error", err.Error())

	// Whatever net/http's error says, only the origin remains.
	target := withSecrets("http://127.0.0.1:9")
	inner := &url.Error{Op: "Post", URL: target, Err: errors.New("odd failure at " + target + " path /hook-path-SECRET")}
	assertNoURLSecret(t, "the redacted error", redactedHTTPError(inner, target).Error())

	c.NotifyURL = withSecrets("https://hooks.example.com")
	if got := c.ShownNotifyURL(); got != "https://hooks.example.com (set)" {
		t.Fatalf("shown notify_url %q", got)
	}
	if got := (Config{}).ShownNotifyURL(); got != "" {
		t.Fatalf("shown unset notify_url %q", got)
	}
}

// A redirecting receiver gets one request and the redirect target none: a 3xx is a failed
// delivery, and not tried again (it would redirect again).
func TestNotifyRedirectNotFollowed(t *testing.T) {
	te := newEnv(t)
	target := newReceiver(t)
	var hits atomic.Int32
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Redirect(w, r, target.srv.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	withNotify(t, te, withSecrets(redirector.URL), nil)
	te.importRole(t, "app", "pw")
	te.e.Rotate(context.Background(), "app")
	eventually(t, "a warning is logged", func() bool { return strings.Contains(te.logs.String(), "notification not delivered") })
	if n := hits.Load(); n != 1 {
		t.Fatalf("the redirecting receiver got %d requests, want 1", n)
	}
	if got := target.events(); len(got) != 0 {
		t.Fatalf("the redirect target received %v", got)
	}
	logs := te.logs.String()
	if !strings.Contains(logs, "HTTP 307") || !strings.Contains(logs, "attempts=1") {
		t.Fatalf("log: %s", logs)
	}
	assertNoURLSecret(t, "the log", logs)
}
