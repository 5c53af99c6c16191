package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// Vault is a Vault server on 127.0.0.1 run by a test.
type Vault struct {
	Addr      string      // http://127.0.0.1:PORT
	Token     string      // root token
	UnsealKey string      // file mode only (one key share, threshold 1)
	Client    *api.Client // root-token client on Addr
	Dir       string      // working directory: config, log, file storage (Dir/data)
	PluginDir string      // the server's plugin directory
	LogPath   string      // server log (stdout+stderr of every run, appended)
	Bin       string      // vault binary
	Dev       bool        // -dev (in-memory storage; Restart is not possible)

	opts       VaultOptions
	port       int
	configPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd exits
	pgids   []int         // process groups of every run (vault + its plugin processes)
	mounts  []string      // plugin mounts, waited for on Restart
	logFile *os.File
}

// VaultOptions configures StartVault.
type VaultOptions struct {
	Dev       bool     // dev server (in-memory) instead of file storage with init+unseal
	PluginDir string   // plugin directory ("" = none)
	Env       []string // extra KEY=VALUE for the server process; plugin processes inherit it
	LogLevel  string   // default "debug"
	Bin       string   // vault binary ("" = VaultBinary)
}

// StartDevVault starts `vault server -dev` with a known root token on a free 127.0.0.1 port, plugin directory pluginDir.
func StartDevVault(t testing.TB, pluginDir string) *Vault {
	t.Helper()
	return StartVault(t, VaultOptions{Dev: true, PluginDir: pluginDir})
}

// StartFileVault starts a Vault server with file storage under Dir/data, initializes it with one key share, and unseals
// it. It survives Kill/Stop + Restart with its data.
func StartFileVault(t testing.TB, pluginDir string) *Vault {
	t.Helper()
	return StartVault(t, VaultOptions{PluginDir: pluginDir})
}

var (
	vaultBinOnce sync.Once
	vaultBin     string
	vaultBinErr  error
)

// VaultBinary returns $VAULT_BIN, else the output of bootstrap/build-vault.sh (run once per test binary).
func VaultBinary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("VAULT_BIN"); b != "" {
		return b
	}
	root := RepoRoot(t)
	vaultBinOnce.Do(func() {
		cmd := exec.Command("bash", filepath.Join(root, "bootstrap", "build-vault.sh"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			vaultBinErr = fmt.Errorf("testenv: bootstrap/build-vault.sh: %v\n%s", err, stderr.String())
			return
		}
		vaultBin = strings.TrimSpace(string(out))
	})
	if vaultBinErr != nil {
		t.Fatal(vaultBinErr)
	}
	return vaultBin
}

var (
	vaultUIBinOnce sync.Once
	vaultUIBin     string
	vaultUIBinErr  error
)

// VaultUIBinary returns $VAULT_UI_BIN, else the output of bootstrap/build-vault-ui.sh (run once per test binary): the
// pinned Vault with its web UI at /ui/. Cold, that script builds for about 20 minutes.
func VaultUIBinary(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("VAULT_UI_BIN"); b != "" {
		return b
	}
	root := RepoRoot(t)
	vaultUIBinOnce.Do(func() {
		// A cold build takes ~20 min: bounded, so that a stuck one ends (and frees the build lock) by itself.
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "bootstrap", "build-vault-ui.sh"))
		cmd.WaitDelay = 10 * time.Second
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			vaultUIBinErr = fmt.Errorf("testenv: bootstrap/build-vault-ui.sh: %v\n%s", err, stderr.String())
			return
		}
		vaultUIBin = strings.TrimSpace(string(out))
	})
	if vaultUIBinErr != nil {
		t.Fatal(vaultUIBinErr)
	}
	return vaultUIBin
}

// StartVault starts a Vault server; cleanup stops it (and its plugin processes) and removes Dir.
func StartVault(t testing.TB, o VaultOptions) *Vault {
	t.Helper()
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	bin := o.Bin
	if bin == "" {
		bin = VaultBinary(t)
	}
	if o.PluginDir != "" {
		abs, err := filepath.Abs(o.PluginDir)
		if err != nil {
			t.Fatal(err)
		}
		o.PluginDir = abs
	}
	v := &Vault{
		Dev:       o.Dev,
		PluginDir: o.PluginDir,
		Bin:       bin,
		Dir:       sharedTempDir(t, "testenv-vault-"),
		opts:      o,
		port:      freePortPair(t),
	}
	v.Addr = fmt.Sprintf("http://127.0.0.1:%d", v.port)
	v.LogPath = filepath.Join(v.Dir, "vault.log")
	t.Cleanup(func() { v.shutdown(t) })

	if o.Dev {
		v.Token = "root-" + randHex(t, 8)
	} else {
		v.configPath = filepath.Join(v.Dir, "vault.hcl")
		v.writeConfig(t)
	}

	client, err := api.NewClient(&api.Config{Address: v.Addr, Timeout: 60 * time.Second, MaxRetries: 2})
	if err != nil {
		t.Fatal(err)
	}
	client.ClearNamespace()
	v.Client = client

	v.startListening(t)
	if o.Dev {
		client.SetToken(v.Token)
		v.waitActive(t)
		return v
	}

	v.waitResponding(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	init, err := client.Sys().InitWithContext(ctx, &api.InitRequest{SecretShares: 1, SecretThreshold: 1})
	if err != nil {
		t.Fatalf("testenv: vault operator init: %v\n%s", err, v.ServerLog(t))
	}
	v.UnsealKey = init.Keys[0]
	v.Token = init.RootToken
	client.SetToken(v.Token)
	v.unseal(t)
	v.waitActive(t)
	return v
}

func (v *Vault) args() []string {
	if v.Dev {
		a := []string{"server", "-dev",
			"-dev-root-token-id=" + v.Token,
			fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", v.port),
			"-log-level=" + v.opts.LogLevel,
		}
		if v.PluginDir != "" {
			a = append(a, "-dev-plugin-dir="+v.PluginDir)
		}
		return a
	}
	return []string{"server", "-config=" + v.configPath, "-log-level=" + v.opts.LogLevel}
}

func (v *Vault) startProcess(t testing.TB) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil {
		t.Fatal("testenv: vault is already running")
	}
	if v.logFile == nil {
		f, err := os.OpenFile(v.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		v.logFile = f
	}
	fmt.Fprintf(v.logFile, "==== testenv: %s %s (%s)\n", v.Bin, strings.Join(v.args(), " "), time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(v.Bin, v.args()...)
	cmd.Dir = v.Dir
	env := []string{}
	for _, kv := range os.Environ() {
		// The server must not pick up a developer's client settings.
		if strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "VAULT_BIN=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+v.Dir, "VAULT_ADDR="+v.Addr) // dev mode writes ~/.vault-token; keep it in Dir
	cmd.Env = append(env, v.opts.Env...)
	cmd.Stdout = v.logFile
	cmd.Stderr = v.logFile
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: starting vault: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	v.cmd, v.done = cmd, done
	v.pgids = append(v.pgids, cmd.Process.Pid) // Setpgid: pgid == pid
}

// writeConfig writes the file-storage server's configuration for v.port.
func (v *Vault) writeConfig(t testing.TB) {
	t.Helper()
	cfg := serverHCL(fmt.Sprintf("storage \"file\" {\n  path = %q\n}\n", filepath.Join(v.Dir, "data")), v.port, v.PluginDir)
	if err := os.WriteFile(v.configPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startListening starts the server, on other ports when the ones picked were taken between the
// pick and the bind (by another process's ephemeral port: tests run in parallel): up to three
// tries. Any other failure is left to the waits that follow, which report it with the log.
func (v *Vault) startListening(t testing.TB) {
	t.Helper()
	for try := 1; ; try++ {
		v.startProcess(t)
		deadline := time.Now().Add(30 * time.Second)
		for !v.exited() && time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := v.Client.Sys().HealthWithContext(ctx)
			cancel()
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !v.exited() || try == 3 || !strings.Contains(v.ServerLog(t), "address already in use") {
			return
		}
		v.mu.Lock()
		v.cmd, v.done = nil, nil
		v.mu.Unlock()
		v.port = freePortPair(t)
		v.Addr = fmt.Sprintf("http://127.0.0.1:%d", v.port)
		if err := v.Client.SetAddress(v.Addr); err != nil {
			t.Fatal(err)
		}
		if !v.Dev {
			v.writeConfig(t)
		}
		t.Logf("testenv: vault's port was taken before it bound; trying 127.0.0.1:%d", v.port)
	}
}

// running reports whether the current process is alive, returning its exit channel.
func (v *Vault) current() (*exec.Cmd, chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.cmd, v.done
}

func (v *Vault) exited() bool {
	_, done := v.current()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// poll calls f until it returns nil, failing the test after timeout or when the server process exits.
func (v *Vault) poll(t testing.TB, what string, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if v.exited() {
			t.Fatalf("testenv: vault exited while waiting for %s (last error: %v)\n--- server log ---\n%s", what, err, v.ServerLog(t))
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: timed out after %s waiting for %s: %v\n--- server log ---\n%s", timeout, what, err, v.ServerLog(t))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (v *Vault) waitResponding(t testing.TB) {
	t.Helper()
	v.poll(t, "the server to listen", 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := v.Client.Sys().HealthWithContext(ctx)
		return err
	})
}

func (v *Vault) unseal(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := v.Client.Sys().UnsealWithContext(ctx, v.UnsealKey)
	if err != nil {
		t.Fatalf("testenv: unseal: %v\n%s", err, v.ServerLog(t))
	}
	if st.Sealed {
		t.Fatalf("testenv: still sealed after unseal: %+v", st)
	}
}

// waitActive waits until the server is initialized, unsealed, active, and the root token works.
func (v *Vault) waitActive(t testing.TB) {
	t.Helper()
	v.poll(t, "vault to become active", 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, err := v.Client.Sys().HealthWithContext(ctx)
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed || h.Standby {
			return fmt.Errorf("health: initialized=%v sealed=%v standby=%v", h.Initialized, h.Sealed, h.Standby)
		}
		_, err = v.Client.Auth().Token().LookupSelfWithContext(ctx)
		return err
	})
}

// WaitPlugin waits until the backend mounted at path answers (a help request served by the plugin).
func (v *Vault) WaitPlugin(t testing.TB, path string) {
	t.Helper()
	path = strings.Trim(path, "/")
	v.poll(t, "the plugin at "+path+"/ to answer", 90*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := v.Client.HelpWithContext(ctx, path)
		return err
	})
}

// MountPlugin registers the plugin binary of pluginDir (which must be the server's plugin directory) in the catalog as
// secret/vault-plugin-rotation with sha and PluginVersion, and enables it at path; it waits until the mount answers.
func (v *Vault) MountPlugin(t testing.TB, pluginDir, sha, path string) {
	t.Helper()
	v.MountPluginEnv(t, pluginDir, sha, path, nil)
}

// MountPluginEnv is MountPlugin with KEY=VALUE environment variables set on the catalog entry (given to the plugin process).
// Registering again with the same sha is harmless, so several mounts may share one registration.
func (v *Vault) MountPluginEnv(t testing.TB, pluginDir, sha, path string, env []string) {
	t.Helper()
	v.MountPluginAs(t, PluginName, pluginDir, sha, path, env)
}

// MountPluginAs is MountPluginEnv with the catalog name given: several names for one binary let mounts of one server run
// with different environments (each name is one catalog entry, with its own env and its own plugin processes).
func (v *Vault) MountPluginAs(t testing.TB, name, pluginDir, sha, path string, env []string) {
	t.Helper()
	abs, err := filepath.Abs(pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	if abs != v.PluginDir {
		t.Fatalf("testenv: MountPlugin: plugin dir %s is not the server's plugin directory %q", abs, v.PluginDir)
	}
	path = strings.Trim(path, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := v.Client.Sys().RegisterPluginWithContext(ctx, &api.RegisterPluginInput{
		Name:    name,
		Type:    api.PluginTypeSecrets,
		Command: PluginName,
		SHA256:  sha,
		Version: PluginVersion,
		Env:     env,
	}); err != nil {
		t.Fatalf("testenv: registering plugin: %v\n--- server log ---\n%s", err, v.ServerLog(t))
	}
	if err := v.Client.Sys().MountWithContext(ctx, path, &api.MountInput{
		Type:        name,
		Description: "vault-plugin-rotation (testenv)",
		Config:      api.MountConfigInput{PluginVersion: PluginVersion},
	}); err != nil {
		t.Fatalf("testenv: enabling plugin at %s: %v\n--- server log ---\n%s", path, err, v.ServerLog(t))
	}
	v.mu.Lock()
	v.mounts = append(v.mounts, path)
	v.mu.Unlock()
	v.WaitPlugin(t, path)
}

// Kill sends SIGKILL to the Vault server and to its plugin processes (the whole process group, like a machine crash),
// and waits for the server to exit.
func (v *Vault) Kill(t testing.TB) {
	t.Helper()
	cmd, done := v.current()
	if cmd == nil {
		t.Fatal("testenv: Kill: vault is not running")
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	v.awaitExit(t, done, 30*time.Second)
}

// KillServerOnly sends SIGKILL to the Vault server process only (its plugin processes are left to notice on their own;
// cleanup kills them), and waits for it to exit.
func (v *Vault) KillServerOnly(t testing.TB) {
	t.Helper()
	cmd, done := v.current()
	if cmd == nil {
		t.Fatal("testenv: KillServerOnly: vault is not running")
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	v.awaitExit(t, done, 30*time.Second)
}

// Stop sends SIGTERM and waits up to 60s for a clean shutdown (then SIGKILL).
func (v *Vault) Stop(t testing.TB) {
	t.Helper()
	cmd, done := v.current()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Logf("testenv: vault did not stop within 60s of SIGTERM; killing it")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	v.awaitExit(t, done, 30*time.Second)
}

func (v *Vault) awaitExit(t testing.TB, done chan struct{}, timeout time.Duration) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(timeout):
		t.Fatalf("testenv: vault did not exit within %s", timeout)
	}
	v.mu.Lock()
	v.cmd, v.done = nil, nil
	v.mu.Unlock()
}

// Restart starts the file-storage server again with the same config and port (after Kill or Stop; a running server is
// stopped first), unseals it, waits until it is active and until every plugin mount made with MountPlugin answers.
func (v *Vault) Restart(t testing.TB) {
	t.Helper()
	if v.Dev {
		t.Fatal("testenv: Restart: a dev server keeps its data in memory; use StartFileVault")
	}
	if !v.exited() {
		v.Stop(t)
	}
	v.startProcess(t)
	v.waitResponding(t)
	v.unseal(t)
	v.waitActive(t)
	v.mu.Lock()
	mounts := append([]string(nil), v.mounts...)
	v.mu.Unlock()
	for _, m := range mounts {
		v.WaitPlugin(t, m)
	}
}

// Running reports whether the server process is alive.
func (v *Vault) Running() bool { return !v.exited() }

// ServerLog returns the server log (all runs).
func (v *Vault) ServerLog(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(v.LogPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Logf("testenv: reading vault log: %v", err)
	}
	return string(b)
}

// shutdown (cleanup): SIGTERM the server, then SIGKILL every process group it ever had (orphaned plugins included).
func (v *Vault) shutdown(t testing.TB) {
	cmd, done := v.current()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, pg := range v.pgids {
		_ = syscall.Kill(-pg, syscall.SIGKILL)
	}
	if v.done != nil {
		select {
		case <-v.done:
		case <-time.After(10 * time.Second):
			t.Logf("testenv: vault pid %d did not exit", v.cmd.Process.Pid)
		}
	}
	v.cmd, v.done = nil, nil
	if v.logFile != nil {
		v.logFile.Close()
		v.logFile = nil
	}
	if t.Failed() {
		// Keep the evidence: print the tail of the server log.
		if b, err := os.ReadFile(v.LogPath); err == nil {
			s := string(b)
			if len(s) > 20000 {
				s = "...\n" + s[len(s)-20000:]
			}
			t.Logf("testenv: vault server log (%s):\n%s", v.LogPath, s)
		}
	}
}

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// serverHCL is a `vault server` configuration on 127.0.0.1:port (cluster port port+1, no TLS)
// with the given storage block and plugin directory ("" = none).
func serverHCL(storage string, port int, pluginDir string) string {
	pluginLine := ""
	if pluginDir != "" {
		pluginLine = fmt.Sprintf("plugin_directory = %q\n", pluginDir)
	}
	return storage + fmt.Sprintf(`listener "tcp" {
  address         = "127.0.0.1:%d"
  cluster_address = "127.0.0.1:%d"
  tls_disable     = true
}
%sapi_addr      = "http://127.0.0.1:%d"
cluster_addr  = "https://127.0.0.1:%d"
disable_mlock = true
ui            = false
`, port, port+1, pluginLine, port, port+1)
}
