package paths_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/backend"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testkit"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/paths"
)

// The API is tested without a database through the FAKE fault-test kind of internal/testkit,
// and without sleeping through its settable clock.
const faultType = testkit.FaultKindName

type faultTarget = testkit.FaultTarget

// newFault registers a fresh fake target whose live password is password ("": no value yet).
func newFault(t *testing.T, password string) (*faultTarget, string) {
	t.Helper()
	var live map[string]string
	if password != "" {
		live = testkit.FaultSecret(password)
	}
	return testkit.NewFaultTarget(t, live)
}

type env struct {
	b       *paths.Backend
	storage logical.Storage
	clock   *testkit.Clock
}

func newBackend(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	storage := &logical.InmemStorage{}
	conf := &logical.BackendConfig{
		StorageView: storage,
		Logger:      hclog.NewNullLogger(),
		System:      &logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour},
	}
	lb, err := paths.Factory(ctx, conf)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := lb.(*paths.Backend)
	if !ok {
		t.Fatalf("Factory returned %T", lb)
	}
	c := testkit.NewClock(time.Date(2026, 2, 15, 12, 0, 0, 0, time.UTC))
	b.Engine().SetClock(c)
	if err := b.Initialize(ctx, &logical.InitializationRequest{Storage: storage}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Cleanup(ctx) })
	return &env{b: b, storage: storage, clock: c}
}

// do sends one request and returns the response, the error and the HTTP status Vault would answer.
func (e *env) do(t testing.TB, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, int, error) {
	t.Helper()
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: e.storage}
	resp, err := e.b.HandleRequest(context.Background(), req)
	status, _ := logical.RespondErrorCommon(req, resp, err)
	if err != nil {
		logical.AdjustErrorStatusCode(&status, err) // what Vault's HTTP layer does with a CodedError
	}
	if status == 0 {
		status = http.StatusOK
	}
	return resp, status, err
}

// ok sends a request that must succeed.
func (e *env) ok(t *testing.T, op logical.Operation, path string, data map[string]interface{}) *logical.Response {
	t.Helper()
	resp, status, err := e.do(t, op, path, data)
	if err != nil || status != http.StatusOK || (resp != nil && resp.IsError()) {
		t.Fatalf("%s %s: status %d, err %v, resp %+v", op, path, status, err, resp)
	}
	return resp
}

// bad sends a request that must fail with status, with a message containing mention.
func (e *env) bad(t *testing.T, op logical.Operation, path string, data map[string]interface{}, status int, mention string) {
	t.Helper()
	resp, got, err := e.do(t, op, path, data)
	if got != status {
		t.Fatalf("%s %s: status %d, want %d (err %v, resp %+v)", op, path, got, status, err, resp)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if resp != nil && resp.IsError() {
		msg += resp.Error().Error()
	}
	if !strings.Contains(msg, mention) {
		t.Fatalf("%s %s: message %q does not mention %q", op, path, msg, mention)
	}
}

func asJSON(t *testing.T, v interface{}) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// importFault creates a fault-test role importing value.
func (e *env) importFault(t *testing.T, name, value string) *faultTarget {
	t.Helper()
	ft, target := newFault(t, value)
	e.ok(t, logical.CreateOperation, "roles/"+name, map[string]interface{}{
		"type": faultType, "rotation_period": "1h", "target": target, "value": value,
	})
	return ft
}

func TestRoleCreateImportAndRead(t *testing.T) {
	e := newBackend(t)
	ft := e.importFault(t, "imp", "imported-secret-1")
	if !ft.Live().Equal(testkit.FaultSecret("imported-secret-1")) {
		t.Fatal("import changed the target")
	}
	resp := e.ok(t, logical.ReadOperation, "roles/imp", nil)
	d := resp.Data
	if d["type"] != faultType || fmt.Sprint(d["rotation_period"]) != "3600" || fmt.Sprint(d["current_version"]) != "1" ||
		d["auto_rotate"] != true || fmt.Sprint(d["versions_kept"]) != "5" || d["pending"] != false || d["failing"] != false {
		t.Fatalf("role read = %v", d)
	}
	if d["next_rotation"] != "2026-02-15T13:00:00Z" || d["last_rotated"] != "2026-02-15T12:00:00Z" {
		t.Fatalf("schedule = %v / %v", d["last_rotated"], d["next_rotation"])
	}
	if _, has := d["value"]; has {
		t.Fatal("role read returns the write-only value field")
	}
	if strings.Contains(asJSON(t, resp), "imported-secret-1") {
		t.Fatal("role read contains the secret")
	}
}

func TestRoleCreateWithoutValueRotates(t *testing.T) {
	e := newBackend(t)
	ft, target := newFault(t, "")
	resp := e.ok(t, logical.CreateOperation, "roles/gen", map[string]interface{}{
		"type": faultType, "rotation_schedule": "0 0 1 1,4,7,10 *", "target": target,
	})
	if resp == nil || fmt.Sprint(resp.Data["version"]) != "1" || resp.Data["trigger"] != "create" || resp.Data["outcome"] != "success" {
		t.Fatalf("create response = %+v", resp)
	}
	if strings.Contains(asJSON(t, resp), ft.Live()["password"]) {
		t.Fatal("create response contains the generated secret")
	}
	read := e.ok(t, logical.ReadOperation, "roles/gen", nil)
	if read.Data["next_rotation"] != "2026-04-01T00:00:00Z" {
		t.Fatalf("next_rotation = %v", read.Data["next_rotation"])
	}
}

func TestRoleWriteValidation(t *testing.T) {
	e := newBackend(t)
	_, target := newFault(t, "v")
	pgURL := "postgres://{{username}}:{{password}}@127.0.0.1:1/db?sslmode=disable"
	pg := func(extra map[string]interface{}) map[string]interface{} {
		d := map[string]interface{}{"type": "postgres", "rotation_period": "2160h", "connection_url": pgURL, "username": "app"}
		for k, v := range extra {
			if v == nil {
				delete(d, k)
			} else {
				d[k] = v
			}
		}
		return d
	}
	cases := []struct {
		name    string
		path    string
		data    map[string]interface{}
		mention string
	}{
		{"unknown field on postgres", "roles/x", pg(map[string]interface{}{"hosts": "a:22"}), "hosts: not a field of a postgres role"},
		{"field of another type", "roles/x", pg(map[string]interface{}{"target": target}), "target: not a field of a postgres role"},
		{"several foreign fields", "roles/x", pg(map[string]interface{}{"labels": "a", "hosts": "b"}), "hosts, labels: not a field of a postgres role"},
		{"postgres field on fault-test", "roles/x", map[string]interface{}{"type": faultType, "rotation_period": "1h", "target": target, "value": "v", "connection_url": pgURL}, "connection_url: not a field of a fault-test role"},
		{"no type", "roles/x", map[string]interface{}{"rotation_period": "1h"}, "type: required"},
		{"unknown type", "roles/x", map[string]interface{}{"type": "ldap", "rotation_period": "1h"}, `type: "ldap" is not one of`},
		{"bad name", "roles/a..b", pg(nil), "name:"},
		{"slash in name", "roles/a/b", pg(nil), "name:"},
		{"url without password", "roles/x", pg(map[string]interface{}{"connection_url": "postgres://{{username}}@h/db", "password": "p"}), "connection_url: must contain {{password}}"},
		{"alternating without admin", "roles/x", pg(map[string]interface{}{"username": nil, "strategy": "alternating", "usernames": "app_blue,app_green"}), "admin_role: strategy=alternating needs an admin_role"},
		{"usernames with single", "roles/x", pg(map[string]interface{}{"usernames": "a,b", "password": "p"}), "usernames: only used with strategy=alternating"},
		{"username too long", "roles/x", pg(map[string]interface{}{"username": strings.Repeat("u", 64), "password": "p"}), "username:"},
		{"strategy not allowed", "roles/x", pg(map[string]interface{}{"strategy": "triple", "password": "p"}), "strategy:"},
		{"self-managed without password", "roles/x", pg(nil), "password: required"},
		{"admin_role missing", "roles/x", pg(map[string]interface{}{"admin_role": "nobody"}), `admin_role: role "nobody" does not exist`},
		{"both period and schedule", "roles/x", pg(map[string]interface{}{"rotation_schedule": "0 0 1 * *", "password": "p"}), "rotation_period and rotation_schedule"},
		{"neither period nor schedule", "roles/x", pg(map[string]interface{}{"rotation_period": nil, "password": "p"}), "rotation_period or rotation_schedule"},
		{"six-field cron", "roles/x", pg(map[string]interface{}{"rotation_period": nil, "rotation_schedule": "0 0 0 1 * *", "password": "p"}), "rotation_schedule:"},
		{"versions_kept", "roles/x", pg(map[string]interface{}{"versions_kept": 1, "password": "p"}), "versions_kept:"},
		{"versions_kept not a number", "roles/x", pg(map[string]interface{}{"versions_kept": "many", "password": "p"}), "versions_kept"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.bad(t, logical.CreateOperation, tc.path, tc.data, http.StatusBadRequest, tc.mention)
		})
	}
	if _, status, _ := e.do(t, logical.ListOperation, "roles/", nil); status != http.StatusNotFound {
		t.Fatalf("a rejected write stored a role (LIST status %d)", status)
	}
}

func TestRoleUpdate(t *testing.T) {
	e := newBackend(t)
	e.importFault(t, "u", "pw-upd")
	e.bad(t, logical.UpdateOperation, "roles/u", map[string]interface{}{"type": "postgres"}, http.StatusBadRequest, "type: cannot change from fault-test to postgres")
	e.bad(t, logical.UpdateOperation, "roles/u", map[string]interface{}{"connection_url": "x"}, http.StatusBadRequest, "connection_url: not a field of a fault-test role")
	e.ok(t, logical.UpdateOperation, "roles/u", map[string]interface{}{"labels": "a,b", "size": 3, "versions_kept": 3, "auto_rotate": false})
	d := e.ok(t, logical.ReadOperation, "roles/u", nil).Data
	if fmt.Sprint(d["labels"]) != "[a b]" || fmt.Sprint(d["size"]) != "3" || fmt.Sprint(d["versions_kept"]) != "3" || d["auto_rotate"] != false || d["next_rotation"] != nil {
		t.Fatalf("updated role = %v", d)
	}
}

func TestMissingRoles(t *testing.T) {
	e := newBackend(t)
	if resp, status, err := e.do(t, logical.ReadOperation, "roles/nope", nil); resp != nil || err != nil || status != http.StatusNotFound {
		t.Fatalf("read missing role: %v %d %v", resp, status, err)
	}
	for _, tc := range []struct {
		op   logical.Operation
		path string
	}{
		{logical.UpdateOperation, "rotate/nope"},
		{logical.UpdateOperation, "rollback/nope"},
		{logical.ReadOperation, "creds/nope"},
		{logical.ReadOperation, "versions/nope"},
		{logical.ReadOperation, "history/nope"},
	} {
		e.bad(t, tc.op, tc.path, nil, http.StatusNotFound, `role "nope" not found`)
	}
	// A deleted role is gone; deleting it again is fine.
	e.importFault(t, "d", "pw-del")
	e.ok(t, logical.DeleteOperation, "roles/d", nil)
	e.ok(t, logical.DeleteOperation, "roles/d", nil)
	e.bad(t, logical.ReadOperation, "creds/d", nil, http.StatusNotFound, "not found")
}

func TestListRoles(t *testing.T) {
	e := newBackend(t)
	if _, status, _ := e.do(t, logical.ListOperation, "roles/", nil); status != http.StatusNotFound {
		t.Fatalf("empty list status %d, want 404", status)
	}
	e.importFault(t, "b", "pw-b")
	e.importFault(t, "a", "pw-a")
	resp := e.ok(t, logical.ListOperation, "roles/", nil)
	keys := resp.Data["keys"].([]string)
	sort.Strings(keys)
	if strings.Join(keys, ",") != "a,b" {
		t.Fatalf("keys = %v", keys)
	}
	resp = e.ok(t, logical.ListOperation, "roles", nil)
	if len(resp.Data["keys"].([]string)) != 2 {
		t.Fatalf("LIST roles without slash = %v", resp.Data)
	}
}

func TestRotateCredsVersionsHistoryRollback(t *testing.T) {
	e := newBackend(t)
	ft := e.importFault(t, "r", "pw-first-value")

	creds := e.ok(t, logical.ReadOperation, "creds/r", nil).Data
	if creds["password"] != "pw-first-value" || creds["username"] != testkit.FaultUser || fmt.Sprint(creds["version"]) != "1" || creds["dsn"] != "fake://svc-user:pw-first-value" {
		t.Fatalf("creds = %v", creds)
	}

	e.clock.Advance(time.Minute)
	rot := e.ok(t, logical.UpdateOperation, "rotate/r", nil).Data
	if fmt.Sprint(rot["version"]) != "2" || fmt.Sprint(rot["version_before"]) != "1" || rot["outcome"] != "success" || rot["trigger"] != "manual" {
		t.Fatalf("rotate = %v", rot)
	}
	steps := rot["steps"].([]map[string]interface{})
	if len(steps) != 4 || steps[0]["name"] != "prepare" || steps[3]["name"] != "promote" {
		t.Fatalf("steps = %v", steps)
	}
	second := ft.Live()["password"]
	if strings.Contains(asJSON(t, rot), second) {
		t.Fatal("rotate response contains the new secret")
	}

	creds = e.ok(t, logical.ReadOperation, "creds/r", nil).Data
	if creds["password"] != second || fmt.Sprint(creds["current_version"]) != "2" {
		t.Fatalf("creds after rotate = %v", creds)
	}
	old := e.ok(t, logical.ReadOperation, "creds/r", map[string]interface{}{"version": 1}).Data
	if old["password"] != "pw-first-value" || fmt.Sprint(old["version"]) != "1" || fmt.Sprint(old["current_version"]) != "2" {
		t.Fatalf("creds version=1 = %v", old)
	}
	e.bad(t, logical.ReadOperation, "creds/r", map[string]interface{}{"version": 7}, http.StatusBadRequest, "version: 7 is not a kept version")
	e.bad(t, logical.ReadOperation, "creds/r", map[string]interface{}{"version": -1}, http.StatusBadRequest, "version:")

	vresp := e.ok(t, logical.ReadOperation, "versions/r", nil)
	vs := vresp.Data["versions"].([]map[string]interface{})
	if len(vs) != 2 || fmt.Sprint(vs[0]["version"]) != "2" || vs[0]["status"] != "active" || vs[1]["status"] != "previous" || fmt.Sprint(vresp.Data["current_version"]) != "2" {
		t.Fatalf("versions = %v", vresp.Data)
	}

	// A failed rotation: a 400 that says which step failed and that the old value is live.
	ft.ScriptApply(testkit.ApplyFailBefore)
	resp, status, err := e.do(t, logical.UpdateOperation, "rotate/r", nil)
	if err != nil || status != http.StatusBadRequest || !resp.IsError() {
		t.Fatalf("failed rotate: %d %v %+v", status, err, resp)
	}
	msg := resp.Error().Error()
	if !strings.Contains(msg, "failed at apply") || !strings.Contains(msg, "previous value is still the current one") {
		t.Fatalf("failed rotate message = %q", msg)
	}
	if data, _ := resp.Data["data"].(map[string]interface{}); data["failed_step"] != "apply" || data["outcome"] != "failed" || data["rolled_back"] != false {
		t.Fatalf("failed rotate data = %v", resp.Data)
	}
	if ft.Live()["password"] != second {
		t.Fatal("the failed rotation changed the live value")
	}

	rb := e.ok(t, logical.UpdateOperation, "rollback/r", nil).Data
	if fmt.Sprint(rb["version"]) != "3" || rb["trigger"] != "rollback" {
		t.Fatalf("rollback = %v", rb)
	}
	if ft.Live()["password"] != "pw-first-value" {
		t.Fatal("rollback did not re-apply the previous value")
	}
	e.bad(t, logical.UpdateOperation, "rollback/r", map[string]interface{}{"version": 3}, http.StatusBadRequest, "already the current version")
	e.bad(t, logical.UpdateOperation, "rollback/r", map[string]interface{}{"version": -2}, http.StatusBadRequest, "version:")

	hist := e.ok(t, logical.ReadOperation, "history/r", nil)
	entries := hist.Data["history"].([]map[string]interface{})
	if len(entries) != 3 || entries[0]["trigger"] != "rollback" || entries[1]["outcome"] != "failed" || entries[1]["failed_step"] != "apply" || entries[2]["trigger"] != "manual" {
		t.Fatalf("history = %v", entries)
	}
	for _, path := range []string{"history/r", "versions/r", "roles/r"} {
		text := asJSON(t, e.ok(t, logical.ReadOperation, path, nil))
		for _, secret := range []string{"pw-first-value", second} {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains a secret value: %s", path, text)
			}
		}
	}
}

func TestConfigPath(t *testing.T) {
	e := newBackend(t)
	d := e.ok(t, logical.ReadOperation, "config", nil).Data
	def := backend.DefaultConfig()
	if fmt.Sprint(d["max_parallel"]) != fmt.Sprint(def.MaxParallel) || fmt.Sprint(d["retry_base"]) != "10" || fmt.Sprint(d["retry_max"]) != "300" ||
		fmt.Sprint(d["history_limit"]) != "100" || fmt.Sprint(d["max_failures"]) != "5" {
		t.Fatalf("default config = %v", d)
	}
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"max_parallel": 8, "retry_base": "30s", "retry_max": "10m", "history_limit": 50, "max_failures": 2})
	d = e.ok(t, logical.ReadOperation, "config", nil).Data
	if fmt.Sprint(d["max_parallel"]) != "8" || fmt.Sprint(d["retry_base"]) != "30" || fmt.Sprint(d["retry_max"]) != "600" ||
		fmt.Sprint(d["history_limit"]) != "50" || fmt.Sprint(d["max_failures"]) != "2" {
		t.Fatalf("config = %v", d)
	}
	if c := e.b.Engine().Config(); c.MaxParallel != 8 || c.RetryBase != 30*time.Second {
		t.Fatalf("engine config = %+v", c)
	}
	// A partial update keeps the other settings.
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"max_failures": 4})
	if c := e.b.Engine().Config(); c.MaxParallel != 8 || c.MaxFailures != 4 {
		t.Fatalf("partial update: %+v", c)
	}

	for _, tc := range []struct {
		data    map[string]interface{}
		mention string
	}{
		{map[string]interface{}{"max_parallel": 0}, "max_parallel:"},
		{map[string]interface{}{"max_parallel": 1000}, "max_parallel:"},
		{map[string]interface{}{"history_limit": 0}, "history_limit:"},
		{map[string]interface{}{"retry_base": "1h"}, "retry_max: must be at least retry_base"},
		{map[string]interface{}{"max_failures": 0}, "max_failures:"},
		{map[string]interface{}{"bogus": 1}, "bogus: not a config field"},
	} {
		e.bad(t, logical.UpdateOperation, "config", tc.data, http.StatusBadRequest, tc.mention)
	}
	if c := e.b.Engine().Config(); c.MaxParallel != 8 || c.MaxFailures != 4 {
		t.Fatalf("a rejected write changed the config: %+v", c)
	}
}

// notify_url is write-only: a read shows its scheme and host, never its path, query or user info;
// a bad one is refused without echoing it; other writes keep it.
func TestConfigNotifyURLWriteOnly(t *testing.T) {
	e := newBackend(t)
	secret := "https://user-SECRET:pass-SECRET@hooks.example.com/services/path-SECRET?token=query-SECRET"
	noSecret := func(what string, v interface{}) {
		t.Helper()
		text, _ := json.Marshal(v)
		for _, p := range []string{"SECRET", "/services"} {
			if strings.Contains(string(text), p) {
				t.Fatalf("%s shows notify_url's %q: %s", what, p, text)
			}
		}
	}
	resp := e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"notify_url": secret})
	noSecret("the write's response", resp)
	d := e.ok(t, logical.ReadOperation, "config", nil).Data
	if d["notify_url"] != "https://hooks.example.com (set)" {
		t.Fatalf("notify_url read as %v", d["notify_url"])
	}
	noSecret("a config read", d)
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"max_failures": 3})
	if e.b.Engine().Config().NotifyURL != secret {
		t.Fatal("a write of another field lost notify_url")
	}
	r, _, err := e.do(t, logical.UpdateOperation, "config", map[string]interface{}{"notify_url": "ftp://hooks.example.com/path-SECRET?token=query-SECRET"})
	if r == nil || !r.IsError() {
		t.Fatalf("an ftp notify_url was taken: %v %v", r, err)
	}
	noSecret("the refusal", r)
	if err != nil {
		noSecret("the refusal", err.Error())
	}
	e.ok(t, logical.UpdateOperation, "config", map[string]interface{}{"notify_url": ""})
	if d := e.ok(t, logical.ReadOperation, "config", nil).Data; d["notify_url"] != "" {
		t.Fatalf("unset notify_url read as %v", d["notify_url"])
	}
}

func TestPathsHaveHelpAndDisplayAttrs(t *testing.T) {
	e := newBackend(t)
	if len(e.b.Backend.Paths) < 8 {
		t.Fatalf("only %d paths", len(e.b.Backend.Paths))
	}
	for _, p := range e.b.Backend.Paths {
		if strings.TrimSpace(p.HelpSynopsis) == "" || strings.TrimSpace(p.HelpDescription) == "" {
			t.Errorf("%s: no help", p.Pattern)
		}
		if p.DisplayAttrs == nil || p.DisplayAttrs.OperationPrefix != "rotation" {
			t.Errorf("%s: DisplayAttrs.OperationPrefix is not rotation", p.Pattern)
		}
		if len(p.Operations) == 0 {
			t.Errorf("%s: no operations", p.Pattern)
		}
		for op, h := range p.Operations {
			if h.Properties().Summary == "" {
				t.Errorf("%s %s: no summary", p.Pattern, op)
			}
		}
		for name, f := range p.Fields {
			if f.Description == "" {
				t.Errorf("%s: field %s has no description", p.Pattern, name)
			}
		}
	}
	// help on a path, and the OpenAPI document Vault builds from the paths.
	for _, path := range []string{"roles/x", "rotate/x", "creds/x", "versions/x", "rollback/x", "history/x", "config", "roles/"} {
		resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.HelpOperation, Path: path, Storage: e.storage})
		if err != nil || resp == nil || resp.Data["help"] == nil || resp.Data["openapi"] == nil {
			t.Errorf("help %s: %v %+v", path, err, resp)
		}
	}
	// Write-only fields are marked sensitive.
	for _, p := range e.b.Backend.Paths {
		if f, ok := p.Fields["password"]; ok && (f.DisplayAttrs == nil || !f.DisplayAttrs.Sensitive) {
			t.Errorf("%s: password is not marked sensitive", p.Pattern)
		}
	}
}

// TestConfigNeedsSudo: rotation/config is a root path, so Vault asks for the sudo capability on
// it. Vault's core enforces root paths before the request reaches the plugin (HandleRequest here
// does not), so the unit test checks the declaration and that it covers exactly the config path;
// integration/record_test.go checks the 403 of a token without sudo on a real server.
func TestConfigNeedsSudo(t *testing.T) {
	e := newBackend(t)
	root := e.b.SpecialPaths().Root
	if want := []string{"config", "rotate-many", "jobs", "jobs/*", "exposure/*"}; !slices.Equal(root, want) {
		t.Fatalf("PathsSpecial.Root = %v, want %v (the mount settings and the actions across roles)", root, want)
	}
	// Exact match (no trailing *): roles, creds and the rest need no sudo.
	for _, p := range e.b.Backend.Paths {
		if p.Pattern == "config" {
			return
		}
	}
	t.Fatal("no config path")
}

func TestSealWrapStorage(t *testing.T) {
	e := newBackend(t)
	sw := e.b.SpecialPaths().SealWrapStorage
	for _, want := range []string{"config", "role/", "state/", "pending/"} {
		found := false
		for _, p := range sw {
			found = found || p == want
		}
		if !found {
			t.Errorf("SealWrapStorage %v lacks %s", sw, want)
		}
	}
}

func TestPeriodicFuncRotatesDueRoles(t *testing.T) {
	e := newBackend(t)
	ft := e.importFault(t, "p", "pw-periodic")
	e.clock.Advance(time.Hour)
	if err := e.b.Backend.PeriodicFunc(context.Background(), &logical.Request{Storage: e.storage}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ft.Live()["password"] == "pw-periodic" {
		if time.Now().After(deadline) {
			t.Fatal("the periodic function did not rotate the due role")
		}
		time.Sleep(time.Millisecond)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		hist := e.ok(t, logical.ReadOperation, "history/p", nil).Data["history"].([]map[string]interface{})
		if len(hist) == 1 {
			if hist[0]["trigger"] != "schedule" || hist[0]["outcome"] != "success" {
				t.Fatalf("history = %v", hist)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no history entry")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPostgresImportErrorHidesPassword imports a postgres role against a closed local port (no
// server is needed: the connection is refused at once). The 400 must not echo the password.
func TestPostgresImportErrorHidesPassword(t *testing.T) {
	e := newBackend(t)
	const pw = "imp0rted p@ss:word/%"
	e.bad(t, logical.CreateOperation, "roles/pg", map[string]interface{}{
		"type": "postgres", "rotation_schedule": "0 0 1 1,4,7,10 *", "username": "app", "password": pw,
		"connection_url": "postgres://{{username}}:{{password}}@127.0.0.1:1/db?sslmode=disable&connect_timeout=5",
	}, http.StatusBadRequest, "cannot reach the target to check the supplied current value")
	resp, _, _ := e.do(t, logical.CreateOperation, "roles/pg", map[string]interface{}{
		"type": "postgres", "rotation_schedule": "0 0 1 1,4,7,10 *", "username": "app", "password": pw,
		"connection_url": "postgres://{{username}}:{{password}}@127.0.0.1:1/db?sslmode=disable&connect_timeout=5",
	})
	text := asJSON(t, resp)
	for _, form := range []string{pw, "imp0rted", "p%40ss"} {
		if strings.Contains(text, form) {
			t.Fatalf("the error shows the password (%q): %s", form, text)
		}
	}
	if _, status, _ := e.do(t, logical.ReadOperation, "roles/pg", nil); status != http.StatusNotFound {
		t.Fatal("a role was stored although its value could not be checked")
	}
}
