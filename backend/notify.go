package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/httperr"
)

// Notification events, as the webhook document names them.
const (
	NotifySuccess  = "success"
	NotifyFailure  = "failure"
	NotifyRollback = "rollback"
	NotifyParked   = "parked"
	NotifyDue      = "due"
)

// Vault event types the engine sends (best effort: only servers with events deliver them).
const (
	EventRotate     = "rotation/rotate"
	EventRotateFail = "rotation/rotate-fail"
	EventRollback   = "rotation/rollback"
)

// Notification is the JSON document posted to notify_url. It never holds a secret value.
type Notification struct {
	Event         string  `json:"event"`
	Role          string  `json:"role"`
	Type          string  `json:"type"`
	Version       int     `json:"version"`
	VersionBefore int     `json:"version_before"`
	Trigger       Trigger `json:"trigger,omitempty"`
	Outcome       string  `json:"outcome,omitempty"`
	FailedStep    string  `json:"failed_step,omitempty"`
	Error         string  `json:"error,omitempty"`
	// Forgotten and Warnings are the rotation's look for forgotten consumers.
	Forgotten []ForgottenConsumer `json:"possible_forgotten_consumers,omitempty"`
	Warnings  []string            `json:"warnings,omitempty"`
	Time      time.Time           `json:"time"`
}

// Delivery bounds: a notification is tried notifyAttempts times, the queue holds notifyQueue
// documents; a full queue drops the newest with a warning rather than slow a rotation.
const (
	notifyAttempts = 3
	notifyQueue    = 1024
	notifyTimeout  = 5 * time.Second
)

// notifier posts notifications from one background goroutine, so that delivery never blocks or
// fails a rotation.
type notifier struct {
	logger hclog.Logger
	client *http.Client
	queue  chan queued
	wait   func(time.Duration) // between attempts; tests shorten it
	once   sync.Once
	done   chan struct{}
}

type queued struct {
	url string
	doc Notification
}

func newNotifier(logger hclog.Logger) *notifier {
	return &notifier{
		logger: logger,
		client: &http.Client{
			Timeout: notifyTimeout,
			// A redirect is a failed delivery: the document goes to notify_url or nowhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		queue: make(chan queued, notifyQueue),
		wait:  time.Sleep,
		done:  make(chan struct{}),
	}
}

func (n *notifier) start(ctx context.Context) {
	n.once.Do(func() {
		go func() {
			defer close(n.done)
			for {
				select {
				case <-ctx.Done():
					return
				case q := <-n.queue:
					n.deliver(ctx, q)
				}
			}
		}()
	})
}

func (n *notifier) send(url string, doc Notification) {
	if url == "" {
		return
	}
	select {
	case n.queue <- queued{url: url, doc: doc}:
	default:
		n.logger.Warn("notification queue full; dropped", "role", doc.Role, "event", doc.Event)
	}
}

func (n *notifier) deliver(ctx context.Context, q queued) {
	body, err := json.Marshal(q.doc)
	if err != nil {
		return
	}
	var last error
	attempts := 0
	for attempts < notifyAttempts {
		attempts++
		var final bool
		if final, last = n.post(ctx, q.url, body); last == nil {
			return
		}
		if final {
			break
		}
		if attempts < notifyAttempts && ctx.Err() == nil {
			n.wait(time.Duration(attempts) * time.Second)
		}
	}
	// Only the receiver's origin is logged: the URL's path, query or user info is often its
	// credential, and post's errors never hold them.
	n.logger.Warn("notification not delivered", "role", q.doc.Role, "event", q.doc.Event, "target", urlOrigin(q.url), "attempts", attempts, "error", last)
}

// post sends one document. Its error never holds the URL (net/http quotes it in its own errors):
// it says what failed, HTTP status, connection refused or timeout. final is true when another
// attempt would be answered the same way (a redirect).
func (n *notifier) post(ctx context.Context, target string, body []byte) (final bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return true, errors.New("notify_url is not a valid URL")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return false, redactedHTTPError(err, target)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // never read into an error
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode <= 399:
		return true, fmt.Errorf("HTTP %d: a redirect, not followed", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return false, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return false, nil
}

// redactedHTTPError says what failed in a request to target without any part of target beyond
// its origin: net/http's errors quote the whole URL.
func redactedHTTPError(err error, target string) error {
	err = httperr.Cause(err)
	text := err.Error()
	// Defence in depth: whatever the inner error is, no part of the URL but its origin remains.
	if u, perr := url.Parse(target); perr == nil {
		for _, part := range []string{target, u.RawQuery, u.EscapedPath(), u.Path, u.User.String(), u.Fragment} {
			if len(part) > 1 {
				text = strings.ReplaceAll(text, part, "…")
			}
		}
	}
	return errors.New(text)
}

// announce tells the world about a finished run: the webhook and Vault's event bus. Neither
// can fail or slow the rotation.
func (e *Engine) announce(r *run) {
	out := r.out
	doc := Notification{
		Role: r.role.Name, Type: r.role.Type, Version: out.NewVersion, VersionBefore: out.OldVersion,
		Trigger: out.Trigger, Outcome: out.Result, FailedStep: out.FailedStep, Error: out.Error, Time: e.now(),
		Forgotten: out.Forgotten, Warnings: out.Warnings,
	}
	if doc.Version == 0 {
		doc.Version = doc.VersionBefore
	}
	var events []string
	switch {
	case out.Success && out.Trigger == TriggerRollback:
		doc.Event, events = NotifyRollback, []string{EventRollback}
	case out.Success:
		doc.Event, events = NotifySuccess, []string{EventRotate}
	case out.RolledBack:
		doc.Event, events = NotifyRollback, []string{EventRotateFail, EventRollback}
	default:
		doc.Event, events = NotifyFailure, []string{EventRotateFail}
	}
	url := e.Config().NotifyURL
	e.notify.send(url, doc)
	if r.state.Failing && !out.Success {
		parked := doc
		parked.Event = NotifyParked
		e.notify.send(url, parked)
	}
	for _, ev := range events {
		e.sendEvent(ev, doc)
	}
}

// sendEvent sends a Vault event in the background; a server without events (Vault CE) accepts
// or refuses it, and either way the rotation does not wait.
func (e *Engine) sendEvent(eventType string, doc Notification) {
	if e.events == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(e.ctx, notifyTimeout)
		defer cancel()
		err := logical.SendEvent(ctx, e.events, eventType,
			"role", doc.Role, "type", doc.Type, "version", fmt.Sprint(doc.Version),
			"trigger", string(doc.Trigger), "outcome", doc.Outcome, "failed_step", doc.FailedStep)
		if err != nil {
			e.logger.Debug("event not sent", "event", eventType, "role", doc.Role, "error", err)
		}
	}()
}
