// Package uitest drives the Vault web UI in headless Chromium, the way an operator uses the plugin there: Vault's UI
// does not render a custom secrets engine's pages, so the plugin is used through the web console (`>_`) and the API
// Explorer (Tools → API Explorer, built from sys/internal/specs/openapi).
package uitest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/hashicorp/vault/api"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// chromiumPath is Debian's chromium (scripts/install-deps.sh installs it); $CHROMIUM overrides it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("chromium is missing (%v): run scripts/install-deps.sh, or set CHROMIUM to a Chromium binary", err)
	}
	return p
}

// narrowPolicy may read the status and one role's credentials, nothing else.
const narrowPolicy = `
path "rotation/status"    { capabilities = ["read"] }
path "rotation/creds/app" { capabilities = ["read"] }
`

// TestVaultUI: the pinned Vault with its UI and the plugin at rotation/, one PostgreSQL role. In the browser: log in
// with the root token, see the dashboard, rotate the role and read the status in the web console (the rotation is
// real: PostgreSQL's password changes), find and call rotation/rotate/{name} in the API Explorer, then log in with a
// narrow token whose console may not read another role's credentials. Screenshots go to $UI_SCREENSHOTS (make
// ui-screenshots: docs/ui), else to a temporary directory.
func TestVaultUI(t *testing.T) {
	chromium := chromiumPath(t)
	shots := os.Getenv("UI_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}

	pg := testenv.StartPostgres(t)
	dir, sha := testenv.PluginBinary(t)
	v := testenv.StartVault(t, testenv.VaultOptions{Dev: true, PluginDir: dir, Bin: testenv.VaultUIBinary(t)})
	v.MountPlugin(t, dir, sha, "rotation")
	root := v.Client
	ctx := context.Background()

	pg.Exec(t, `CREATE ROLE oa_admin LOGIN CREATEROLE PASSWORD 'ui-admin-initial-pw'`)
	pg.Exec(t, `CREATE ROLE app LOGIN PASSWORD 'ui-app-initial-pw'`)
	write := func(path string, data map[string]interface{}) *api.Secret {
		t.Helper()
		sec, err := root.Logical().WriteWithContext(ctx, path, data)
		if err != nil {
			t.Fatalf("write %s: %v", path, err)
		}
		return sec
	}
	write("rotation/roles/pg-admin", map[string]interface{}{
		"type": "postgres", "connection_url": pg.URLTemplate(), "username": "oa_admin", "password": "ui-admin-initial-pw",
		"rotation_period": "2160h", "allowed_usernames": "app",
	})
	write("rotation/roles/app", map[string]interface{}{"type": "postgres", "admin_role": "pg-admin", "username": "app", "rotation_period": "720h"})
	version := func() int {
		t.Helper()
		sec, err := root.Logical().ReadWithContext(ctx, "rotation/roles/app")
		if err != nil || sec == nil {
			t.Fatalf("read rotation/roles/app: %v", err)
		}
		var n int
		if _, err := fmt.Sscan(fmt.Sprint(sec.Data["current_version"]), &n); err != nil {
			t.Fatalf("current_version %v: %v", sec.Data["current_version"], err)
		}
		return n
	}
	if got := version(); got != 1 {
		t.Fatalf("app: current_version %d after create, want 1", got)
	}
	adminCreds, err := root.Logical().ReadWithContext(ctx, "rotation/creds/pg-admin")
	if err != nil || adminCreds == nil {
		t.Fatalf("read rotation/creds/pg-admin: %v", err)
	}
	adminPassword, _ := adminCreds.Data["password"].(string)
	if err := root.Sys().PutPolicyWithContext(ctx, "ui-narrow", narrowPolicy); err != nil {
		t.Fatal(err)
	}
	narrow, err := root.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{Policies: []string{"ui-narrow"}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}

	b := newBrowser(t, chromium, shots)
	b.hide(v.Token, narrow.Auth.ClientToken, adminPassword)

	// Log in with the root token; the dashboard lists the mount.
	b.login(v.Addr, v.Token)
	b.waitText("the dashboard", "body", "rotation/", 60*time.Second)
	b.dismissToasts()
	b.shot("dashboard")

	// The web console: rotate, then read the status.
	b.do("open the console", 20*time.Second, chromedp.Click(chromedp.CSS(consoleToggle)),
		chromedp.WaitVisible(chromedp.CSS(`#console-input`)))
	b.do("maximize the console", 10*time.Second, chromedp.Click(chromedp.CSS(`button[aria-label="Maximize window"]`)))
	b.console("write -f rotation/rotate/app", "version", 60*time.Second)
	if got := version(); got != 2 {
		t.Fatalf("after the console's rotate: current_version %d, want 2", got)
	}
	// PostgreSQL's password changed: the new one logs in, the initial one no longer does.
	appCreds, err := root.Logical().ReadWithContext(ctx, "rotation/creds/app")
	if err != nil || appCreds == nil {
		t.Fatalf("read rotation/creds/app: %v", err)
	}
	appPassword, _ := appCreds.Data["password"].(string)
	b.hide(appPassword)
	if err := pg.CanLogin("app", appPassword); err != nil {
		t.Fatalf("the rotated password of app does not log in: %v", err)
	}
	if pg.CanLogin("app", "ui-app-initial-pw") == nil {
		t.Fatal("app's initial password still logs in after the console's rotate")
	}
	b.console("read rotation/status", "overdue", 30*time.Second)
	out := b.text(".console-ui-panel-content")
	for _, want := range []string{"pg-admin", "app", "current_version", "last_rotated"} {
		if !strings.Contains(out, want) {
			t.Errorf("the console's `read rotation/status` output lacks %q:\n%s", want, out)
		}
	}
	b.shot("console")
	b.do("close the console", 20*time.Second, chromedp.Click(chromedp.CSS(`button[aria-label="Close console"]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#console-input`)))

	// Tools → API Explorer: our paths, with their help, callable with "Try it out".
	b.clickText("the Tools link", "a", "Tools", 20*time.Second)
	b.clickText("the API Explorer link", "a", "API Explorer", 20*time.Second)
	b.do("the API Explorer's filter", 90*time.Second, chromedp.WaitVisible(chromedp.CSS(`input.operation-filter-input`)))
	b.do("filter rotation/rotate", 20*time.Second, chromedp.SendKeys(chromedp.CSS(`input.operation-filter-input`), "rotation/rotate"))
	op := `.opblock-summary-path[data-path="/rotation/rotate/{name}"]`
	b.do("find rotation/rotate/{name}", 30*time.Second, chromedp.WaitVisible(chromedp.CSS(op)))
	b.do("expand rotation/rotate/{name}", 30*time.Second, chromedp.Click(chromedp.CSS(op)),
		chromedp.WaitVisible(chromedp.CSS(`.opblock.is-open button.try-out__btn`)))
	b.waitText("the operation's help", ".opblock.is-open", "Rotate", 10*time.Second)
	b.until("try it out", `(() => {
		const open = document.querySelector(".opblock.is-open");
		const input = open && open.querySelector('tr[data-param-name="name"] input');
		if (input && !input.disabled) return true;
		const button = open && open.querySelector("button.try-out__btn:not(.cancel)");
		if (button) button.click();
		return false;
	})()`, 30*time.Second)
	b.do("call rotation/rotate/app", 30*time.Second,
		chromedp.SendKeys(chromedp.CSS(`.opblock.is-open tr[data-param-name="name"] input`), "app"),
		// the body: {} (swagger's example is "string"); React reads the value from an input event
		void(chromedp.Evaluate[bool](`(() => {
			const ta = document.querySelector(".opblock.is-open textarea.body-param__text");
			Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, "value").set.call(ta, "{}");
			ta.dispatchEvent(new Event("input", { bubbles: true }));
			return true;
		})()`)),
		chromedp.Click(chromedp.CSS(`.opblock.is-open button.execute`)),
		chromedp.WaitVisible(chromedp.CSS(`.opblock.is-open .live-responses-table .response-col_status`)))
	b.waitText("the API Explorer's response", ".opblock.is-open .live-responses-table", "200", 30*time.Second)
	if got := version(); got != 3 {
		t.Fatalf("after the API Explorer's rotate: current_version %d, want 3", got)
	}
	b.dismissToasts()
	b.do("scroll to the operation", 10*time.Second, void(chromedp.Evaluate[bool](fmt.Sprintf(
		`(() => { document.querySelector(%q).closest(".opblock").scrollIntoView({ block: "start" }); return true; })()`, op))))
	b.shotSized("api-explorer", 1440, 1500)

	// A narrow token: its console reads what its policy allows and is refused the rest.
	b.do("log out", 30*time.Second, chromedp.Navigate(v.Addr+"/ui/vault/logout"), chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	b.login(v.Addr, narrow.Auth.ClientToken)
	b.do("open the console", 60*time.Second, chromedp.WaitVisible(chromedp.CSS(consoleToggle)),
		chromedp.Click(chromedp.CSS(consoleToggle)), chromedp.WaitVisible(chromedp.CSS(`#console-input`)))
	b.console("read rotation/creds/pg-admin", "permission denied", 30*time.Second)
	b.console("read rotation/status", "current_version", 30*time.Second)
	// Checked before the screenshot, which would blank it.
	page := b.text("body")
	if adminPassword == "" || strings.Contains(page, adminPassword) {
		t.Fatalf("the admin's password is on the narrow token's page (or was never read)")
	}
	b.shot("console-narrow-token")
}

// browser is one headless Chromium tab; every step is bounded and a failed step saves a screenshot.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string

	mu      sync.Mutex
	logs    []string // the page's console messages and exceptions
	secrets []string // blanked before every screenshot
}

// hide registers values that must never appear in a screenshot.
func (b *browser) hide(values ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.secrets = append(b.secrets, values...)
}

func newBrowser(t *testing.T, chromium, shots string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("password-store", "basic"),
		// Loopback only: every other host fails to resolve and no proxy is asked.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 900),
		chromedp.WSURLReadTimeout(60 * time.Second), // bounds the browser's start
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	b := &browser{t: t, ctx: ctx, shots: shots}
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
	})
	// The first Run starts the browser; it must not run under a timeout (that would stop the browser with it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.logs = append(b.logs, m.String())
			b.mu.Unlock()
		}
	}()
	return b
}

// void makes an action that answers a value into a step of do.
func void[T any](a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := a(ctx, t)
		return chromedp.Void{}, err
	}
}

// do runs steps within timeout; on failure it saves failure-STEP.png, prints the page and its console, and fails.
func (b *browser) do(step string, timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fail(step, err)
	}
}

func (b *browser) fail(step string, err error) {
	b.t.Helper()
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("not done in time: %w", err)
	}
	name := "failure-" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(step))
	b.shot(name)
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	url, _ := chromedp.Run(ctx, chromedp.Location())
	body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	b.mu.Lock()
	logs := strings.Join(b.logs, "\n")
	b.mu.Unlock()
	b.t.Fatalf("%s: %v\nurl: %s\npage text:\n%s\nbrowser console:\n%s\nscreenshot: %s", step, err, url, body, logs,
		filepath.Join(b.shots, name+".png"))
}

// shot saves the viewport as NAME.png. The screenshots are committed (docs/ui), so every secret
// the test knows (tokens, passwords: b.secrets) is blanked on the page first, and the shot is
// refused if one is still in the page's text (found by review: the API Explorer's curl line
// showed the root token).
func (b *browser) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	b.mu.Lock()
	secrets, _ := json.Marshal(b.secrets)
	b.mu.Unlock()
	left, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`(() => {
		const secrets = %s.filter((s) => s.length > 0);
		const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
		for (let n = walker.nextNode(); n; n = walker.nextNode()) {
			for (const s of secrets) if (n.nodeValue.includes(s)) n.nodeValue = n.nodeValue.replaceAll(s, "<redacted>");
		}
		for (const el of document.querySelectorAll("input, textarea")) {
			for (const s of secrets) if (el.value.includes(s)) el.value = el.value.replaceAll(s, "<redacted>");
		}
		const text = document.body.innerText;
		return secrets.some((s) => text.includes(s));
	})()`, secrets)))
	if err != nil {
		b.fail("blank the secrets for "+name, err)
	}
	if left {
		b.t.Fatalf("screenshot %s: a secret is still on the page after blanking; not saved", name)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// shotSized saves NAME.png with the viewport set to width×height for it.
func (b *browser) shotSized(name string, width, height int64) {
	b.t.Helper()
	b.do("resize for "+name, 10*time.Second, chromedp.EmulateViewport(width, height))
	b.shot(name)
	b.do("resize back after "+name, 10*time.Second, chromedp.ResetViewport())
}

// text is the innerText of the first element matching the CSS selector ("" when none).
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : ""; })()`, sel)))
	if err != nil {
		b.fail("read "+sel, err)
	}
	return s
}

// until waits until the JavaScript expression is true.
func (b *browser) until(step, expr string, timeout time.Duration) {
	b.t.Helper()
	b.do(step, timeout, void(chromedp.Poll[bool](expr, chromedp.WithPollingInterval(200*time.Millisecond))))
}

// waitText waits until the first element matching sel contains want.
func (b *browser) waitText(step, sel, want string, timeout time.Duration) {
	b.t.Helper()
	b.until(step, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.innerText.includes(%q); })()`, sel, want), timeout)
}

// clickText clicks the first visible element matching tag whose text is exactly text, once there is one.
func (b *browser) clickText(step, tag, text string, timeout time.Duration) {
	b.t.Helper()
	b.until(step, fmt.Sprintf(`(() => {
		const e = [...document.querySelectorAll(%q)].find((e) => e.innerText.trim() === %q && e.offsetParent !== null);
		if (!e) return false;
		e.click();
		return true;
	})()`, tag, text), timeout)
}

// login signs in on the token form.
func (b *browser) login(addr, token string) {
	b.t.Helper()
	b.do("the login page", 60*time.Second, chromedp.Navigate(addr+"/ui/vault/auth?with=token"),
		chromedp.WaitVisible(chromedp.CSS(`input[name="token"]`)))
	b.do("sign in", 60*time.Second,
		chromedp.SendKeys(chromedp.CSS(`input[name="token"]`), token),
		chromedp.Click(chromedp.CSS(`form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(consoleToggle)))
}

// dismissToasts closes the flash messages (the root token's warning) so that they cover no screenshot.
func (b *browser) dismissToasts() {
	b.t.Helper()
	b.do("dismiss the flash messages", 10*time.Second, void(chromedp.Evaluate[int](`(() => {
		const buttons = [...document.querySelectorAll('.hds-toast button[aria-label="Dismiss"], .hds-toast .hds-alert__dismiss')];
		buttons.forEach((e) => e.click());
		return buttons.length;
	})()`)))
	b.until("the flash messages gone", `document.querySelectorAll(".hds-toast").length === 0`, 10*time.Second)
}

// consoleToggle is the `>_` button at the top of the sidebar.
const consoleToggle = `button[aria-label="Console toggle"]`

// console runs a command in the open web console and waits until its output shows want once more than before.
func (b *browser) console(command, want string, timeout time.Duration) {
	b.t.Helper()
	before := strings.Count(b.text(".console-ui-panel-content"), want)
	b.do("console: "+command, 10*time.Second, chromedp.SendKeys(chromedp.CSS(`#console-input`), command+kb.Enter))
	b.until("console output of "+command, fmt.Sprintf(
		`(() => { const e = document.querySelector(".console-ui-panel-content"); return !!e && e.innerText.split(%q).length - 1 > %d; })()`,
		want, before), timeout)
}

// TestVaultClientStandIn: our @hashicorp/vault-client-typescript (bootstrap/vault-ui/packages/vault-client-typescript),
// generated from this Vault's OpenAPI document as build-vault-ui.sh does, called from node the way the UI calls it
// against the real server (testdata/client-check.mjs): responses, errors, path/query/body/header parameters,
// initOverrides, a login, and an Enterprise-only operation.
func TestVaultClientStandIn(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is missing: run scripts/install-deps.sh")
	}
	v := testenv.StartDevVault(t, "")
	ctx := context.Background()
	if err := v.Client.Sys().EnableAuthWithOptionsWithContext(ctx, "userpass", &api.EnableAuthOptions{Type: "userpass"}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Client.Logical().WriteWithContext(ctx, "auth/userpass/users/ui-user", map[string]interface{}{"password": "ui-pass"}); err != nil {
		t.Fatal(err)
	}
	// Vault's OpenAPI document as build-vault-ui.sh gets it
	hreq, err := http.NewRequestWithContext(ctx, "POST", v.Addr+"/v1/sys/internal/specs/openapi", strings.NewReader(`{"generic_mount_paths": true}`))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("X-Vault-Token", v.Token)
	resp, err := (&http.Client{Timeout: time.Minute}).Do(hreq)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("openapi: %v %v", err, resp)
	}
	defer resp.Body.Close()
	dir := t.TempDir()
	spec := filepath.Join(dir, "openapi.json")
	f, err := os.Create(spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	f.Close()

	pkg := filepath.Join(testenv.RepoRoot(t), "bootstrap", "vault-ui", "packages", "vault-client-typescript")
	for _, name := range []string{"package.json", "runtime.js"} {
		b, err := os.ReadFile(filepath.Join(pkg, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env []string, args ...string) string {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(cctx, node, args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out)
	}
	index := run(nil, filepath.Join(pkg, "gen.mjs"), spec)
	if err := os.WriteFile(filepath.Join(dir, "index.js"), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run([]string{"VAULT_ADDR=" + v.Addr, "VAULT_TOKEN=" + v.Token}, filepath.Join("testdata", "client-check.mjs"), filepath.Join(dir, "index.js"))
	t.Log(strings.TrimSpace(out))
}
