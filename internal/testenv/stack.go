package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/jackc/pgx/v5"
)

// Storage is the kind of Vault a Stack runs on.
type Storage string

const (
	// StorageDev is `vault server -dev`: in-memory storage, the quickest to start; it cannot be restarted.
	StorageDev Storage = "dev"
	// StorageFile is file storage, initialized and unsealed: Kill/Stop + Restart keep its data.
	StorageFile Storage = "file"
	// StorageRaft is a raft cluster of StackOptions.Nodes nodes (default 3) on 127.0.0.1.
	StorageRaft Storage = "raft"
)

// DefaultMount is where NewStack mounts the plugin unless StackOptions.Mount says otherwise.
const DefaultMount = "rotation"

// StackOptions says what NewStack starts. The zero value is a dev Vault with the release build of the plugin at
// rotation/ and no PostgreSQL.
type StackOptions struct {
	Storage Storage // "" = StorageDev
	Nodes   int     // StorageRaft: the number of nodes (0 = 3)

	Postgres       bool      // start a PostgreSQL cluster for the stack
	PostgresOpts   []string  // its `name=value` server settings (e.g. "log_statement=all")
	SharedPostgres *Postgres // use this already started cluster instead (tests that share one; implies Postgres)

	PluginTags string   // build tags of the plugin build ("failpoints"); "" = the release build (or $ROTATION_PLUGIN_DIR)
	PluginName string   // catalog name ("" = PluginName); another name is another catalog entry with its own PluginEnv
	PluginEnv  []string // KEY=VALUE on the catalog entry, given to the plugin process (e.g. ROTATION_FAILPOINT=...)
	Mount      string   // mount path ("" = DefaultMount)
	// OwnPluginDir gives the Vault a plugin directory of its own holding a copy of the build, so that the test may
	// install more binaries there (InstallPlugin) without showing them to other tests' servers.
	OwnPluginDir bool

	// Docker writes the mount's config: docker_host=DockerHost() and allowed_consumers=AllowedConsumers, so that roles
	// may restart the demo consumers of the default engine (RunDemo). Docker fails the test when no engine answers.
	Docker           bool
	AllowedConsumers string // "" = "docker:testenv-demo-*"

	SSHHosts int // start this many sshd hosts for one new login (Stack.SSHUser, Stack.SSH)
}

// Stack is a Vault (one node or a raft cluster) with the plugin mounted, the PostgreSQL server and the sshd hosts
// its roles rotate, and the request helpers of a test against them. Every request goes to Vault's node at Mount; On
// gives the same stack through another node or mount. Every secret value the helpers see (and Remember's) is kept,
// so that AssertNoSecretIn can prove a log or a response holds none of them.
type Stack struct {
	Vault    *Vault   // the node requests go to (with StorageRaft: the active node at start)
	Cluster  *Cluster // StorageRaft only
	Postgres *Postgres
	Mount    string

	PluginDir, PluginSHA string // the plugin build registered in the catalog

	SSHUser string     // with SSHHosts: the login on every host
	SSH     []*SSHHost // with SSHHosts

	leaks      *leakTracker
	ownPlugins bool // the plugin directory is the stack's own (StackOptions.OwnPluginDir)
}

// NewStack starts what o asks for, registers and mounts the plugin, and waits until the mount answers. Cleanup stops
// everything.
func NewStack(t testing.TB, o StackOptions) *Stack {
	t.Helper()
	s := &Stack{Mount: o.Mount, leaks: &leakTracker{}}
	if s.Mount == "" {
		s.Mount = DefaultMount
	}
	switch {
	case o.SharedPostgres != nil:
		s.Postgres = o.SharedPostgres
	case o.Postgres:
		s.Postgres = StartPostgres(t, o.PostgresOpts...)
	}
	if o.PluginTags == "" {
		s.PluginDir, s.PluginSHA = PluginBinary(t)
	} else {
		s.PluginDir, s.PluginSHA = PluginBinaryTags(t, o.PluginTags)
	}
	if o.OwnPluginDir {
		own := sharedTempDir(t, "testenv-plugins-")
		if _, err := copyExecutable(filepath.Join(s.PluginDir, PluginName), filepath.Join(own, PluginName)); err != nil {
			t.Fatal(err)
		}
		s.PluginDir, s.ownPlugins = own, true
	}
	switch o.Storage {
	case StorageDev, "":
		s.Vault = StartDevVault(t, s.PluginDir)
	case StorageFile:
		s.Vault = StartFileVault(t, s.PluginDir)
	case StorageRaft:
		n := o.Nodes
		if n == 0 {
			n = 3
		}
		s.Cluster = StartRaftCluster(t, n, s.PluginDir)
		s.Vault, _ = s.Cluster.Active(t, time.Minute)
	default:
		t.Fatalf("testenv: NewStack: unknown storage %q", o.Storage)
	}
	name := o.PluginName
	if name == "" {
		name = PluginName
	}
	s.Vault.MountPluginAs(t, name, s.PluginDir, s.PluginSHA, s.Mount, o.PluginEnv)
	if o.Docker {
		allowed := o.AllowedConsumers
		if allowed == "" {
			allowed = "docker:testenv-demo-*"
		}
		Docker(t) // fail now, named, when no engine answers
		s.Write(t, "config", map[string]interface{}{"docker_host": DockerHost(), "allowed_consumers": allowed})
	}
	if o.SSHHosts > 0 {
		s.SSHUser = NewSSHUser(t)
		for i := 0; i < o.SSHHosts; i++ {
			s.SSH = append(s.SSH, StartSSHHost(t, s.SSHUser))
		}
	}
	return s
}

// MountPlugin mounts the stack's plugin build again at path under catalog name (its own environment env, its own
// plugin processes) and returns the stack on that mount.
func (s *Stack) MountPlugin(t testing.TB, name, path string, env []string) *Stack {
	t.Helper()
	s.Vault.MountPluginAs(t, name, s.PluginDir, s.PluginSHA, path, env)
	return s.On(s.Vault, path)
}

// InstallPlugin copies the plugin binary of build directory dir (PluginBinaryVersion's) into the server's plugin
// directory under file name name (StackOptions.OwnPluginDir), as an operator installs a new version next to the one
// registered, and returns its sha256.
func (s *Stack) InstallPlugin(t testing.TB, dir, name string) (sha256hex string) {
	t.Helper()
	if !s.ownPlugins || filepath.Base(name) != name || name == PluginName {
		t.Fatalf("testenv: InstallPlugin %q: needs StackOptions.OwnPluginDir and a file name other than %s", name, PluginName)
	}
	sum, err := copyExecutable(filepath.Join(dir, PluginName), filepath.Join(s.PluginDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// copyExecutable copies src to dst (mode 0755) and returns dst's sha256.
func copyExecutable(src, dst string) (string, error) {
	b, err := os.ReadFile(src)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		return "", err
	}
	return FileSHA256(dst)
}

// On is the stack whose requests go to node v at mount ("" = the stack's mount). It shares the leak tracker.
func (s *Stack) On(v *Vault, mount string) *Stack {
	c := *s
	c.Vault = v
	if mount != "" {
		c.Mount = strings.Trim(mount, "/")
	}
	return &c
}

// Client is the root-token client of the node requests go to.
func (s *Stack) Client() *api.Client { return s.Vault.Client }

// PolicyClient is a client on the stack's node whose token has only the named policy (no default policy).
func (s *Stack) PolicyClient(t testing.TB, policy string) *api.Client {
	t.Helper()
	tok, err := s.Vault.Client.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{policy}, NoDefaultPolicy: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Vault.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tok.Auth.ClientToken)
	return c
}

// Write writes to MOUNT/path and fails the test on error.
func (s *Stack) Write(t testing.TB, path string, data map[string]interface{}) *api.Secret {
	t.Helper()
	sec, err := s.Vault.Client.Logical().WriteWithContext(context.Background(), s.Mount+"/"+path, data)
	if err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
	return sec
}

// WriteErr writes to MOUNT/path and returns the API error with its status code (status 0: not an API error).
func (s *Stack) WriteErr(path string, data map[string]interface{}) (*api.Secret, *api.ResponseError) {
	sec, err := s.Vault.Client.Logical().WriteWithContext(context.Background(), s.Mount+"/"+path, data)
	var re *api.ResponseError
	if errors.As(err, &re) {
		return sec, re
	}
	if err != nil {
		return sec, &api.ResponseError{StatusCode: 0, Errors: []string{err.Error()}}
	}
	return sec, nil
}

// Read reads MOUNT/path with query parameters given as name, value pairs (nil when Vault answers 404) and fails the
// test on another error.
func (s *Stack) Read(t testing.TB, path string, params ...string) *api.Secret {
	t.Helper()
	q := map[string][]string{}
	for i := 0; i+1 < len(params); i += 2 {
		q[params[i]] = []string{params[i+1]}
	}
	sec, err := s.Vault.Client.Logical().ReadWithDataWithContext(context.Background(), s.Mount+"/"+path, q)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return sec
}

// List lists MOUNT/path (nil when empty) and fails the test on error.
func (s *Stack) List(t testing.TB, path string) []string {
	t.Helper()
	sec, err := s.Vault.Client.Logical().ListWithContext(context.Background(), s.Mount+"/"+path)
	if err != nil {
		t.Fatalf("list %s: %v", path, err)
	}
	if sec == nil {
		return nil
	}
	keys, _ := sec.Data["keys"].([]interface{})
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprint(k))
	}
	return out
}

// Creds reads creds/ROLE (params as for Read) and remembers its password.
func (s *Stack) Creds(t testing.TB, role string, params ...string) (user, password string, version int) {
	t.Helper()
	sec := s.Read(t, "creds/"+role, params...)
	if sec == nil {
		t.Fatalf("creds/%s: not found", role)
	}
	user, _ = sec.Data["username"].(string)
	password, _ = sec.Data["password"].(string)
	s.Remember(password)
	return user, password, IntOf(t, sec.Data["version"])
}

// CreateLogin creates a PostgreSQL login with a password (extra: more role options, e.g. "CREATEROLE") and remembers it.
func (s *Stack) CreateLogin(t testing.TB, user, password string, extra string) {
	t.Helper()
	s.Postgres.Exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN %s PASSWORD '%s'", QuoteIdent(user), extra, password))
	s.Remember(password)
}

// ImportAdmin creates a CREATEROLE login and imports it as a self-managed role that grants any unprivileged login
// (allowed_usernames=*).
func (s *Stack) ImportAdmin(t testing.TB, role, user, password string) {
	t.Helper()
	s.CreateLogin(t, user, password, "CREATEROLE")
	s.Write(t, "roles/"+role, map[string]interface{}{
		"type": "postgres", "connection_url": s.Postgres.URLTemplate(), "username": user, "password": password,
		"rotation_period": "2160h", "allowed_usernames": "*",
	})
}

// AssertLogin asserts that user/password logs in to PostgreSQL (want true) or is refused (want false).
func (s *Stack) AssertLogin(t testing.TB, user, password string, want bool) {
	t.Helper()
	err := s.Postgres.CanLogin(user, password)
	if want && err != nil {
		t.Fatalf("login %s with the expected password failed: %v", user, err)
	}
	if !want && err == nil {
		t.Fatalf("login %s with a password that should be dead succeeded", user)
	}
}

// RunDemo runs a demo consumer (RunDemoConsumer) that reads MOUNT/creds/ROLE from the stack's node at start.
func (s *Stack) RunDemo(t testing.TB, role string, opts DemoOptions) *Container {
	t.Helper()
	opts.VaultAddr, opts.VaultToken, opts.Role = s.Vault.Addr, s.Vault.Token, role
	if opts.Mount == "" && s.Mount != DefaultMount {
		opts.Mount = s.Mount
	}
	return RunDemoConsumer(t, opts)
}

// RotateUnretried starts rotate/ROLE on a client that does not retry (a retry that reached a restarted or new active
// node would be a second rotation); the channel gets the request's error, bounded by 3 minutes.
func (s *Stack) RotateUnretried(role string) <-chan error {
	done := make(chan error, 1)
	client, err := s.Vault.Client.Clone()
	if err != nil {
		done <- err
		return done
	}
	client.SetToken(s.Vault.Token)
	client.SetMaxRetries(0)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_, err := client.Logical().WriteWithContext(ctx, s.Mount+"/rotate/"+role, nil)
		done <- err
	}()
	return done
}

// leakTracker holds every secret value a test saw.
type leakTracker struct {
	mu      sync.Mutex
	secrets []string
}

// Remember adds secret values to those AssertNoSecretIn looks for ("" is ignored).
func (s *Stack) Remember(values ...string) {
	s.leaks.mu.Lock()
	defer s.leaks.mu.Unlock()
	for _, v := range values {
		if v != "" {
			s.leaks.secrets = append(s.leaks.secrets, v)
		}
	}
}

// Remembered is how many secret values AssertNoSecretIn looks for (a test that proves nothing leaks first proves it
// looked for something).
func (s *Stack) Remembered() int {
	s.leaks.mu.Lock()
	defer s.leaks.mu.Unlock()
	return len(s.leaks.secrets)
}

// AssertNoSecretIn fails the test (without showing the value) when any remembered secret appears in text.
func (s *Stack) AssertNoSecretIn(t testing.TB, what, text string) {
	t.Helper()
	s.leaks.mu.Lock()
	defer s.leaks.mu.Unlock()
	for _, v := range s.leaks.secrets {
		if strings.Contains(text, v) {
			t.Errorf("a secret value appears in %s", what)
		}
	}
}

// QuoteIdent quotes a PostgreSQL identifier.
func QuoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// IntOf is a number of a Vault response (json.Number, float64 or int) as an int; anything else fails the test.
func IntOf(t testing.TB, v interface{}) int {
	t.Helper()
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	case interface{ Int64() (int64, error) }:
		i, err := n.Int64()
		if err != nil {
			t.Fatalf("not an int: %v", v)
		}
		return int(i)
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}

// JSONOf is v as JSON (for failure messages).
func JSONOf(t testing.TB, v interface{}) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Eventually polls cond every half second until it returns nil, failing the test with the last error once timeout
// has passed.
func Eventually(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, err)
}

// ExpectStatus asserts an API error with the given status whose message contains want.
func ExpectStatus(t testing.TB, re *api.ResponseError, status int, want string) {
	t.Helper()
	if re == nil {
		t.Fatalf("expected a %d error containing %q, got success", status, want)
	}
	if re.StatusCode != status || !strings.Contains(strings.Join(re.Errors, " "), want) {
		t.Fatalf("expected %d containing %q, got %d: %v", status, want, re.StatusCode, re.Errors)
	}
}

// CanLoginURL opens a fresh connection with a full PostgreSQL URL and runs SELECT 1; nil means it logs in.
func CanLoginURL(connURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// Failpoint is a pause of the failpoints build of the plugin (PluginTags "failpoints") at a named point of the
// rotation protocol (internal/failpoint): give Env to the catalog entry (StackOptions.PluginEnv), Arm it before the
// rotation that must stop there, and Wait until the plugin pauses. The point is disarmed while Marker exists: it
// exists from the start (so that setup rotations run through), Arm removes it, and the plugin writes it again when it
// pauses, so that it pauses once (not again after a restart, nor in recovery).
type Failpoint struct {
	Point  string
	Pause  time.Duration
	Marker string
}

// NewFailpoint is a disarmed failpoint at point that pauses for pause once armed.
func NewFailpoint(t testing.TB, point string, pause time.Duration) *Failpoint {
	t.Helper()
	f := &Failpoint{Point: point, Pause: pause, Marker: filepath.Join(t.TempDir(), "failpoint-"+point)}
	if err := os.WriteFile(f.Marker, []byte("setup"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Env is the plugin environment that sets the failpoint.
func (f *Failpoint) Env() []string {
	return []string{"ROTATION_FAILPOINT=" + f.Point + "=" + f.Pause.String(), "ROTATION_FAILPOINT_MARKER=" + f.Marker}
}

// Arm makes the next rotation that passes the point pause there.
func (f *Failpoint) Arm(t testing.TB) {
	t.Helper()
	if err := os.Remove(f.Marker); err != nil {
		t.Fatal(err)
	}
}

// Wait waits (at most bound) until the plugin pauses at the point; a rotation that ends first (rotateDone) never
// passed it.
func (f *Failpoint) Wait(t testing.TB, rotateDone <-chan error, bound time.Duration) {
	t.Helper()
	WaitFailpoint(t, f.Marker, f.Point, rotateDone, bound)
}

// WaitFailpoint waits (at most bound) until the plugin pauses at its failpoint, which it says by writing marker; a
// rotation that ends first (rotateDone) never passed the failpoint.
func WaitFailpoint(t testing.TB, marker, point string, rotateDone <-chan error, bound time.Duration) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		if _, err := os.Stat(marker); err == nil {
			return
		}
		select {
		case err := <-rotateDone:
			t.Fatalf("the rotation ended without reaching failpoint %s: %v", point, err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rotation did not reach failpoint %s within %s", point, bound)
		}
	}
}

// WaitResolved waits (at most bound) until ROLE has no pending record, read through the stack's node, and returns the
// role as read then.
func (s *Stack) WaitResolved(t testing.TB, role string, bound time.Duration) map[string]interface{} {
	t.Helper()
	var data map[string]interface{}
	Eventually(t, "the pending record of "+s.Mount+"/"+role+" is resolved", bound, func() error {
		sec, err := s.Vault.Client.Logical().Read(s.Mount + "/roles/" + role)
		if err != nil || sec == nil {
			return fmt.Errorf("read role: %v", err)
		}
		if sec.Data["pending"] != false {
			return fmt.Errorf("pending=%v (last_outcome %v)", sec.Data["pending"], sec.Data["last_outcome"])
		}
		data = sec.Data
		return nil
	})
	return data
}

// NewActive waits (at most timeout) until a node other than node old is the active one and returns it with its
// index (a failover after old was killed, frozen or stopped).
func (c *Cluster) NewActive(t testing.TB, old int, timeout time.Duration) (*Vault, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for i, v := range c.Nodes {
			if i != old && v.IsActive() {
				return v, i
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("testenv: no node other than node%d active within %s", old, timeout)
	return nil, -1
}

// AssertCredsEverywhere reads creds/ROLE at the stack's mount through every running, unsealed node of its cluster
// (standbys forward to the active node) and logs in to PostgreSQL with each answer: all must log in, with one version,
// at least min. It returns that version.
func (s *Stack) AssertCredsEverywhere(t testing.TB, role string, min int) int {
	t.Helper()
	if s.Cluster == nil {
		t.Fatal("testenv: AssertCredsEverywhere needs a raft stack")
	}
	version := -1
	for i, v := range s.Cluster.Nodes {
		if !v.Running() {
			continue
		}
		if hl, err := v.Health(); err != nil || hl.Sealed {
			continue
		}
		u, pw, ver := s.On(v, "").Creds(t, role)
		if err := s.Postgres.CanLogin(u, pw); err != nil {
			t.Fatalf("creds/%s read through node%d (version %d) does not log in: %v", role, i, ver, err)
		}
		if version >= 0 && ver != version {
			t.Fatalf("creds/%s: node%d answers version %d, another node %d", role, i, ver, version)
		}
		version = ver
	}
	if version < min {
		t.Fatalf("creds/%s: version %d, want at least %d", role, version, min)
	}
	return version
}
