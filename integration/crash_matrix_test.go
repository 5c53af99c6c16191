package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
)

// The crash matrix (issue 8): every kind of secret × every phase boundary of the rotation
// protocol (README "How a rotation runs"). Each case runs a file-storage Vault with the
// failpoints build of the plugin, pauses one rotation at the boundary, kills Vault and the plugin
// with SIGKILL, restarts and unseals Vault, lets recovery resolve the pending record, and then
// checks that nothing was lost: creds works at the target, the versions are distinct, no record is
// left, and the next rotation succeeds. The cases share one PostgreSQL cluster (each has its own
// logins), the plugin build and the demo consumer image; each has its own Vault (the failpoint is
// in the plugin process's environment) and, for ssh, its own login and sshd pair.

const (
	// crashRole is the role under test in every case (each case has its own Vault).
	crashRole = "app"
	// crashPause is how long the plugin waits at the failpoint: far longer than the test needs to
	// kill it there.
	crashPause = 10 * time.Minute
	// crashReachBound bounds the rotation's way to its failpoint (an inside-restore case first
	// waits out a failing health check).
	crashReachBound = 2 * time.Minute
	// crashRecoveryBound bounds recovery after the restart. A record in the applying or restoring
	// phase is resolved only once the kind's settle time (rotators.Settler) has passed since the
	// new engine started (docs/decisions.md, "Unknown is a state"), so it is generous.
	crashRecoveryBound = 4 * time.Minute
	// crashHealthTimeout is the health_timeout of a role whose health check is made to fail.
	crashHealthTimeout = "3s"
)

// crashShared is what the cases share: one PostgreSQL cluster (each case has its own logins),
// the failpoints build of the plugin and, through testenv, the demo consumer image.
type crashShared struct {
	pg  *testenv.Postgres
	seq atomic.Int64
}

// crashCase is one row of the matrix while it runs.
type crashCase struct {
	s     *stack
	id    string // unique among the cases: prefixes the PostgreSQL logins
	point string
	// gate is the health check that makes the rotation fail after apply, so that it restores
	// (inside-restore only): open during setup, closed for the rotation that crashes, open again
	// once recovery ran.
	gate *healthGate
}

// roleData is a role's fields plus, for inside-restore, the failing health check.
func (c *crashCase) roleData(fields map[string]interface{}) map[string]interface{} {
	if c.gate != nil {
		checks, _ := fields["health_checks"].(string)
		if checks != "" {
			checks += ","
		}
		fields["health_checks"] = checks + c.gate.url
		fields["health_timeout"] = crashHealthTimeout
	}
	return fields
}

// crashKind is one kind of secret in the matrix.
type crashKind struct {
	name string
	// noTarget: Apply changes nothing outside Vault (token, jwt), so the new value verifies from
	// the moment it is prepared and recovery rolls every record forward.
	noTarget bool
	// consumer: the role restarts a Docker consumer (after-first-restart applies).
	consumer bool
	// inside are the failpoints inside the kind's Apply.
	inside []string
	// secretPart names the creds field that holds the value (versions are compared by it).
	secretPart string
	// setup creates the role (version 1 and, for alternating, 2) and returns the check of the
	// value creds hands out, run after recovery and after the next rotation.
	setup func(t *testing.T, c *crashCase) (check func(t *testing.T))
}

// points are the phase boundaries that apply to the kind, in protocol order.
func (k crashKind) points() []string {
	pts := []string{failpoint.AfterPrepare}
	pts = append(pts, k.inside...)
	pts = append(pts, failpoint.AfterApply, failpoint.AfterVerify)
	if k.consumer {
		pts = append(pts, failpoint.AfterFirstRestart)
	}
	pts = append(pts, failpoint.AfterStateWrite, failpoint.InsideRestore)
	if k.consumer {
		pts = append(pts, failpoint.BeforeRedeploy)
	}
	return pts
}

// crashOutcome is what recovery must make of a record left at a failpoint.
type crashOutcome int

const (
	rolledForward crashOutcome = iota // the new value is live: it becomes current
	dropped                           // the new value never was live: the old one stays
	rolledBack                        // the rotation was restoring: the old value is put back
)

func (k crashKind) expect(point string) crashOutcome {
	switch {
	case point == failpoint.InsideRestore, point == failpoint.BeforeRedeploy:
		return rolledBack
	case k.noTarget:
		return rolledForward
	case point == failpoint.AfterPrepare, point == failpoint.SSHAfterAddFirstHost:
		// The new value is rejected where it was not added: the old one works everywhere.
		return dropped
	}
	return rolledForward
}

func (o crashOutcome) String() string {
	return [...]string{"rolled forward", "dropped", "rolled back"}[o]
}

// crashKinds are the kinds of the matrix.
func crashKinds() []crashKind {
	return []crashKind{
		{name: "postgres-single", secretPart: "password", setup: setupCrashPostgresSingle},
		{name: "postgres-alternating", secretPart: "password", setup: setupCrashPostgresAlternating},
		{name: "token-consumer", noTarget: true, consumer: true, secretPart: "value", setup: setupCrashToken},
		{name: "jwt", noTarget: true, secretPart: "private_key", setup: setupCrashJWT},
		{name: "ssh-two-hosts", secretPart: "private_key", setup: setupCrashSSH,
			inside: []string{failpoint.SSHAfterAddFirstHost, failpoint.SSHAfterAddAllHosts, failpoint.SSHAfterRemoveFirstHost}},
	}
}

// TestCrashMatrix kills Vault at every phase boundary of every kind (issue 8). The cases run in
// parallel, as many at a time as -parallel allows (most of a case is waiting: for Vault, and for
// the target to settle before recovery asks it).
func TestCrashMatrix(t *testing.T) {
	t.Parallel()
	sh := &crashShared{pg: testenv.StartPostgres(t)}
	for _, k := range crashKinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			for _, point := range k.points() {
				t.Run(point, func(t *testing.T) {
					t.Parallel()
					runCrashCase(t, sh, k, point)
				})
			}
		})
	}
}

// runCrashCase is one row of the matrix: set the kind up, crash a rotation at point, restart,
// and check what recovery made of it.
func runCrashCase(t *testing.T, sh *crashShared, k crashKind, point string) {
	// The marker disarms the failpoint while it exists: during setup (creating a role rotates),
	// and after the crash, so that recovery and the next rotation run through.
	fp := testenv.NewFailpoint(t, point, crashPause)
	st := testenv.NewStack(t, testenv.StackOptions{Storage: testenv.StorageFile, SharedPostgres: sh.pg, PluginTags: "failpoints",
		PluginEnv: fp.Env()})
	v := st.Vault
	c := &crashCase{s: &stack{st}, id: fmt.Sprintf("cm%d", sh.seq.Add(1)), point: point}
	s := c.s
	if point == failpoint.InsideRestore || point == failpoint.BeforeRedeploy {
		c.gate = startHealthGate(t)
	}
	check := k.setup(t, c)
	before := testenv.IntOf(t, s.Read(t, "roles/"+crashRole).Data["current_version"])

	// The rotation that crashes.
	if c.gate != nil {
		c.gate.open.Store(false)
	}
	fp.Arm(t)
	rotateDone := s.RotateUnretried(crashRole)
	fp.Wait(t, rotateDone, crashReachBound)
	v.Kill(t)
	select {
	case err := <-rotateDone:
		if err == nil {
			t.Fatal("the rotate request succeeded although Vault was killed inside it")
		}
	case <-time.After(time.Minute):
		t.Fatal("the rotate request did not end within a minute of the kill")
	}
	v.Restart(t)

	s.WaitResolved(t, crashRole, crashRecoveryBound)
	want := k.expect(point)
	wantVersion := before
	if want == rolledForward {
		wantVersion++
	}
	if got := testenv.IntOf(t, s.Read(t, "roles/"+crashRole).Data["current_version"]); got != wantVersion {
		t.Fatalf("current version %d after recovery, want %d (%s from version %d)", got, wantVersion, want, before)
	}
	hist := s.Read(t, "history/"+crashRole).Data["history"].([]interface{})
	last := hist[0].(map[string]interface{})
	wantOutcome := "success"
	if want != rolledForward {
		wantOutcome = "failed"
	}
	if last["trigger"] != "recovery" || last["outcome"] != wantOutcome {
		t.Fatalf("latest history entry is not the recovery (%s, outcome %s): %s", want, wantOutcome, testenv.JSONOf(t, last))
	}
	if c.gate != nil {
		c.gate.open.Store(true)
	}
	// The checks run as subtests, so that a failure says whether recovery or the next rotation
	// left it, and the next rotation is tried after a failed check too.
	checkAll := func(t *testing.T) {
		check(t)
		s.assertVersionsDistinct(t, k.secretPart)
	}
	t.Run("after-recovery", checkAll)

	// The next rotation succeeds, and its value works too.
	rot := s.Write(t, "rotate/"+crashRole, nil)
	if rot == nil || rot.Data["outcome"] != "success" {
		t.Fatalf("the next rotation: %s", testenv.JSONOf(t, rot))
	}
	if got := testenv.IntOf(t, s.Read(t, "roles/"+crashRole).Data["current_version"]); got != wantVersion+1 {
		t.Fatalf("current version %d after the next rotation, want %d", got, wantVersion+1)
	}
	t.Run("after-next-rotation", checkAll)
	s.AssertNoSecretIn(t, "the Vault server log", v.ServerLog(t))
}

// healthGate is an HTTP health check that the test opens and closes.
type healthGate struct {
	open atomic.Bool
	url  string
}

func startHealthGate(t *testing.T) *healthGate {
	t.Helper()
	g := &healthGate{}
	g.open.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !g.open.Load() {
			http.Error(w, "closed by the crash test", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/health"
	return g
}

// assertVersionsDistinct checks that the kept versions have distinct numbers and distinct values
// (compared by hash: the values are never logged).
func (s *stack) assertVersionsDistinct(t *testing.T, part string) {
	t.Helper()
	list := s.Read(t, "versions/"+crashRole).Data["versions"].([]interface{})
	seen := map[int]bool{}
	values := map[string]int{}
	for _, e := range list {
		n := testenv.IntOf(t, e.(map[string]interface{})["version"])
		if seen[n] {
			t.Fatalf("version %d is kept twice", n)
		}
		seen[n] = true
		sec := s.Read(t, "creds/"+crashRole, "version", fmt.Sprint(n))
		val, _ := sec.Data[part].(string)
		if val == "" {
			t.Fatalf("creds version=%d has no %s", n, part)
		}
		s.Remember(val)
		user, _ := sec.Data["username"].(string)
		sum := sha256.Sum256([]byte(user + "\x00" + val))
		h := hex.EncodeToString(sum[:])
		if other, dup := values[h]; dup {
			t.Fatalf("versions %d and %d hold the same value", other, n)
		}
		values[h] = n
	}
}

// randomSecret is a password for a login the test creates, remembered so that no log shows it.
func (c *crashCase) randomSecret(t *testing.T) string {
	t.Helper()
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	pw := "pw-" + hex.EncodeToString(b[:])
	c.s.Remember(pw)
	return pw
}

// pgRole creates an admin login (imported as pg-admin) and returns the fields of a postgres role
// that it manages.
func (c *crashCase) pgRole(t *testing.T, fields map[string]interface{}) map[string]interface{} {
	t.Helper()
	c.s.ImportAdmin(t, "pg-admin", c.id+"_admin", c.randomSecret(t))
	fields["type"] = "postgres"
	fields["admin_role"] = "pg-admin"
	fields["connection_url"] = c.s.Postgres.URLTemplate()
	fields["rotation_period"] = "2160h"
	return c.roleData(fields)
}

// setupCrashPostgresSingle: one login, created at version 1 by the role's first rotation.
func setupCrashPostgresSingle(t *testing.T, c *crashCase) func(*testing.T) {
	s := c.s
	user := c.id + "_app"
	s.CreateLogin(t, user, c.randomSecret(t), "")
	s.Write(t, "roles/"+crashRole, c.pgRole(t, map[string]interface{}{"username": user}))
	return func(t *testing.T) {
		t.Helper()
		u, pw, v := s.Creds(t, crashRole)
		if u != user {
			t.Fatalf("creds username %q, want %q", u, user)
		}
		if err := s.Postgres.CanLogin(u, pw); err != nil {
			t.Fatalf("creds (version %d) does not log in: %v", v, err)
		}
	}
}

// setupCrashPostgresAlternating: two logins, version 1 on the first and version 2 on the second,
// so that the crashed rotation changes the first login and displaces version 1.
func setupCrashPostgresAlternating(t *testing.T, c *crashCase) func(*testing.T) {
	s := c.s
	blue, green := c.id+"_blue", c.id+"_green"
	s.CreateLogin(t, blue, c.randomSecret(t), "")
	s.CreateLogin(t, green, c.randomSecret(t), "")
	s.Write(t, "roles/"+crashRole, c.pgRole(t, map[string]interface{}{"strategy": "alternating", "usernames": blue + "," + green}))
	s.Write(t, "rotate/"+crashRole, nil)
	return func(t *testing.T) {
		t.Helper()
		u, pw, v := s.Creds(t, crashRole)
		if err := s.Postgres.CanLogin(u, pw); err != nil {
			t.Fatalf("creds (version %d, %s) does not log in: %v", v, u, err)
		}
		pu, ppw, _ := s.Creds(t, crashRole, "version", fmt.Sprint(v-1))
		if pu == u {
			t.Fatalf("versions %d and %d are both on login %s", v-1, v, u)
		}
		if err := s.Postgres.CanLogin(pu, ppw); err != nil {
			t.Fatalf("creds version=%d (the previous, %s) does not log in: %v", v-1, pu, err)
		}
	}
}

// setupCrashToken: a generated token whose consumer is a demo container that reads it at start
// and is health-checked.
func setupCrashToken(t *testing.T, c *crashCase) func(*testing.T) {
	s := c.s
	s.Write(t, "config", map[string]interface{}{"docker_host": testenv.DockerHost(), "allowed_consumers": testConsumers})
	s.Write(t, "roles/"+crashRole, map[string]interface{}{
		"type": "token", "format": "base64url", "bytes": 32, "rotation_period": "2160h",
	})
	ctr := s.RunDemo(t, crashRole, testenv.DemoOptions{})
	testenv.WaitHTTPStatus(t, ctr.URL("/health"), http.StatusOK, 30*time.Second)
	s.Write(t, "roles/"+crashRole, c.roleData(map[string]interface{}{
		"consumers": "docker:" + ctr.Name, "health_checks": ctr.URL("/health"), "health_timeout": "20s",
	}))
	return func(t *testing.T) {
		t.Helper()
		sec := s.Read(t, "creds/"+crashRole)
		tok, _ := sec.Data["value"].(string)
		s.Remember(tok)
		v := testenv.IntOf(t, sec.Data["version"])
		if tok == "" {
			t.Fatal("creds has no token")
		}
		if info := ctr.Inspect(t); info.State == nil || !info.State.Running {
			t.Fatalf("consumer %s is not running: %+v", ctr.Name, info.State)
		}
		testenv.WaitHTTPStatus(t, ctr.URL("/health"), http.StatusOK, 15*time.Second)
		if got := demoStartedWith(t, ctr); got.Version != v {
			t.Fatalf("consumer %s runs version %d, creds hands out %d", ctr.Name, got.Version, v)
		}
	}
}

// setupCrashJWT: an ES256 signing key; relying parties verify with the unauthenticated JWK Set.
func setupCrashJWT(t *testing.T, c *crashCase) func(*testing.T) {
	s := c.s
	s.Write(t, "roles/"+crashRole, c.roleData(map[string]interface{}{
		"type": "jwt", "algorithm": "ES256", "rotation_period": "2160h", "verification_ttl": "1h",
	}))
	return func(t *testing.T) {
		t.Helper()
		cr := s.jwtCreds(t, crashRole)
		tok := signJWT(t, cr, "crash")
		if err := verifyJWT(s.jwks(t, crashRole), tok, "crash"); err != nil {
			t.Fatalf("a token signed with creds' key (version %s) does not verify against the JWK Set: %v", cr["version"], err)
		}
	}
}

// setupCrashSSH: one login on two sshd hosts; version 1 is an imported key, authorized among
// foreign lines (a comment with CRLF, a key with options and CRLF, a blank line, a key line after
// ours; on the second host our line first, with an option, and a last line without newline). Each
// case has its own login and sshd pair: the check compares authorized_keys byte for byte, which
// cases running in parallel on shared files would break (starting a pair takes a moment).
func setupCrashSSH(t *testing.T, c *crashCase) func(*testing.T) {
	s := c.s
	user := testenv.NewSSHUser(t)
	hosts := []*testenv.SSHHost{testenv.StartSSHHost(t, user), testenv.StartSSHHost(t, user)}
	key0, line0 := testenv.NewSSHKey(t, "operator@laptop")
	s.Remember(key0)
	_, alice := testenv.NewSSHKey(t, "alice@desk")
	_, bob := testenv.NewSSHKey(t, "bob@ci")
	initial := [][]byte{
		[]byte("# managed by hand\r\n" + `from="127.0.0.1",no-agent-forwarding ` + alice + "\r\n\n" + line0 + "\n" + bob + "\n"),
		[]byte("no-port-forwarding " + line0 + "\n" + bob + "\r\n# last line, no final newline"),
	}
	pub0 := publicKeyOf(t, key0)
	foreign := make([][]byte, len(hosts))
	for i, h := range hosts {
		h.WriteAuthorizedKeys(t, initial[i])
		var n int
		if foreign[i], n = withoutKey(initial[i], pub0); n != 1 {
			t.Fatalf("setup: %d lines of the first key", n)
		}
		if err := h.CanLogin(user, key0); err != nil {
			t.Fatalf("setup: the first key on %s: %v", h.Addr, err)
		}
	}
	s.Write(t, "roles/"+crashRole, c.roleData(map[string]interface{}{
		"type": "ssh", "hosts": hosts[0].Addr + "," + hosts[1].Addr, "username": user,
		"host_keys": []string{hosts[0].KnownHostsLine, hosts[1].KnownHostsLine}, "private_key": key0,
		"rotation_period": "8760h",
	}))
	return func(t *testing.T) {
		t.Helper()
		sec := s.Read(t, "creds/"+crashRole)
		key, _ := sec.Data["private_key"].(string)
		s.Remember(key)
		v := testenv.IntOf(t, sec.Data["version"])
		pub := publicKeyOf(t, key)
		kept := s.sshKeptKeys(t)
		for i, h := range hosts {
			if err := h.CanLogin(user, key); err != nil {
				t.Errorf("creds' key (version %d) does not log in on host %d (%s): %v", v, i+1, h.Addr, err)
			}
			got := h.ReadAuthorizedKeys(t)
			rest, n := withoutKey(got, pub)
			if n == 1 && bytes.Equal(rest, foreign[i]) {
				continue
			}
			var why []string
			if n != 1 {
				why = append(why, fmt.Sprintf("%d lines of the current key (version %d)", n, v))
			}
			why = append(why, extraKeys(rest, foreign[i], kept)...)
			if len(why) == 0 {
				why = append(why, "a foreign line changed")
			}
			// authorized_keys holds public keys only: it may be shown.
			t.Errorf("host %d (%s): %s\nauthorized_keys:\n%q\nforeign lines:\n%q", i+1, h.Addr, strings.Join(why, "; "), got, foreign[i])
		}
	}
}

// extraKeys describes the keys that rest authorizes and foreign does not: retired versions, or
// keys no kept version holds (a stray line of an interrupted rotation).
func extraKeys(rest, foreign []byte, kept []keptKey) []string {
	var out []string
	lines, keys := authorizedLines(rest)
	for i, k := range keys {
		if k == nil || authorizes(foreign, k) {
			continue
		}
		what := "a key that no kept version holds (" + strings.TrimSpace(string(lines[i])) + ")"
		for _, kv := range kept {
			if sameSSHKey(kv.pub, k) {
				what = fmt.Sprintf("the retired key of version %d", kv.n)
			}
		}
		out = append(out, what+" is still authorized")
	}
	return out
}

// keptKey is a kept version's public key.
type keptKey struct {
	n   int
	pub gossh.PublicKey
}

// sshKeptKeys returns the public keys of every kept version of the role.
func (s *stack) sshKeptKeys(t *testing.T) []keptKey {
	t.Helper()
	var out []keptKey
	for _, e := range s.Read(t, "versions/"+crashRole).Data["versions"].([]interface{}) {
		n := testenv.IntOf(t, e.(map[string]interface{})["version"])
		key, _ := s.Read(t, "creds/"+crashRole, "version", fmt.Sprint(n)).Data["private_key"].(string)
		s.Remember(key)
		out = append(out, keptKey{n: n, pub: publicKeyOf(t, key)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n < out[j].n })
	return out
}

func publicKeyOf(t *testing.T, privatePEM string) gossh.PublicKey {
	t.Helper()
	signer, err := gossh.ParsePrivateKey([]byte(privatePEM))
	if err != nil {
		t.Fatalf("parse a private key: %v", err)
	}
	return signer.PublicKey()
}

// authorizedLines splits authorized_keys into lines that keep their terminators and reports, for
// each, the key it authorizes (nil for comments, blank lines and lines that do not parse).
func authorizedLines(content []byte) (lines [][]byte, keys []gossh.PublicKey) {
	for len(content) > 0 {
		i := bytes.IndexByte(content, '\n')
		if i < 0 {
			i = len(content) - 1
		}
		line := content[:i+1]
		content = content[i+1:]
		var key gossh.PublicKey
		if trimmed := bytes.TrimSpace(line); len(trimmed) > 0 && trimmed[0] != '#' {
			if k, _, _, _, err := gossh.ParseAuthorizedKey(trimmed); err == nil {
				key = k
			}
		}
		lines = append(lines, line)
		keys = append(keys, key)
	}
	return lines, keys
}

func sameSSHKey(a, b gossh.PublicKey) bool {
	return a != nil && b != nil && a.Type() == b.Type() && bytes.Equal(a.Marshal(), b.Marshal())
}

// withoutKey removes every line that authorizes key and says how many there were. A removed
// last line without newline takes the newline before it along, the inverse of how the ssh kind
// appends a line to such a file (README "SSH keys": every line that is not ours stays identical).
func withoutKey(content []byte, key gossh.PublicKey) (rest []byte, n int) {
	lines, keys := authorizedLines(content)
	var kept [][]byte
	unterminated := false
	for i, l := range lines {
		if sameSSHKey(keys[i], key) {
			n++
			unterminated = i == len(lines)-1 && !bytes.HasSuffix(l, []byte("\n"))
			continue
		}
		kept = append(kept, l)
	}
	rest = bytes.Join(kept, nil)
	if unterminated && bytes.HasSuffix(rest, []byte("\n")) {
		rest = rest[:len(rest)-1]
	}
	if rest == nil {
		rest = []byte{}
	}
	return rest, n
}

// authorizes reports whether a line of content authorizes key.
func authorizes(content []byte, key gossh.PublicKey) bool {
	_, keys := authorizedLines(content)
	for _, k := range keys {
		if sameSSHKey(k, key) {
			return true
		}
	}
	return false
}
