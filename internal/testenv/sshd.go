package testenv

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// SSHD is the OpenSSH server binary (package openssh-server, scripts/install-deps.sh).
const SSHD = "/usr/sbin/sshd"

// SSHHost is a real OpenSSH server on 127.0.0.1 for one test user. Several hosts for the same user
// each have their own authorized_keys: every sshd runs in its own mount namespace where the user's
// ~/.ssh is a bind mount of the host's directory (AuthorizedKeysPath's directory). Needs root.
type SSHHost struct {
	Addr               string // 127.0.0.1:PORT
	KnownHostsLine     string // "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
	AuthorizedKeysPath string // this host's ~/.ssh/authorized_keys, as seen from the test
	User               string
	LogPath            string // sshd -E log (LogLevel VERBOSE)

	dir        string
	configPath string
	mountPoint string // the user's ~/.ssh, where this host's directory is mounted
	hostKey    gossh.PublicKey

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

var sshUserSeq atomic.Int64

// NewSSHUser creates a local user with a home directory (useradd -m), unlocked for public-key
// logins (usermod -p '*': a locked account is refused by sshd without PAM), with an empty
// ~/.ssh that each SSHHost bind-mounts over. Cleanup removes it (userdel -f -r).
func NewSSHUser(t testing.TB) string {
	t.Helper()
	requireSSHD(t)
	// Unique per test binary and per call; at most 32 characters.
	name := fmt.Sprintf("rot%d_%d", os.Getpid(), sshUserSeq.Add(1))
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("testenv: useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("userdel", "-f", "-r", name).CombinedOutput(); err != nil &&
			!strings.Contains(string(out), "mail spool") {
			t.Logf("testenv: userdel %s: %v\n%s", name, err, out)
		}
	})
	if out, err := exec.Command("usermod", "-p", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("testenv: usermod %s: %v\n%s", name, err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	sshDir := filepath.Join(u.HomeDir, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	chownUser(t, name, sshDir)
	return name
}

func requireSSHD(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testenv: SSH hosts need root (useradd, mount namespaces)")
	}
	if _, err := os.Stat(SSHD); err != nil {
		t.Fatalf("testenv: %s missing (run scripts/install-deps.sh): %v", SSHD, err)
	}
}

func chownUser(t testing.TB, name string, paths ...string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
}

// StartSSHHost starts an sshd on a free 127.0.0.1 port for user (from NewSSHUser) with its own,
// empty authorized_keys directory. Cleanup stops it.
func StartSSHHost(t testing.TB, userName string) *SSHHost {
	t.Helper()
	requireSSHD(t)
	u, err := user.Lookup(userName)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege separation directory
		t.Fatal(err)
	}
	dir := sharedTempDir(t, "testenv-sshd-")
	h := &SSHHost{User: userName, dir: dir, LogPath: filepath.Join(dir, "sshd.log"), configPath: filepath.Join(dir, "sshd_config")}
	keysDir := filepath.Join(dir, "ssh")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		t.Fatal(err)
	}
	chownUser(t, userName, keysDir)
	h.AuthorizedKeysPath = filepath.Join(keysDir, "authorized_keys")

	hostKeyPath := filepath.Join(dir, "host_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-f", hostKeyPath, "-N", "", "-C", "").CombinedOutput(); err != nil {
		t.Fatalf("testenv: ssh-keygen: %v\n%s", err, out)
	}
	pubText, err := os.ReadFile(hostKeyPath + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if h.hostKey, _, _, _, err = gossh.ParseAuthorizedKey(pubText); err != nil {
		t.Fatal(err)
	}
	port := FreePort(t)
	h.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	h.KnownHostsLine = fmt.Sprintf("[127.0.0.1]:%d %s", port, strings.TrimSpace(string(gossh.MarshalAuthorizedKey(h.hostKey))))

	config := fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile %s
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthenticationMethods publickey
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
PermitRootLogin no
UseDNS no
MaxStartups 100
LogLevel VERBOSE
`, port, hostKeyPath, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(h.configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	h.mountPoint = filepath.Join(u.HomeDir, ".ssh")
	t.Cleanup(func() { h.Stop(t) })
	h.Start(t)
	return h
}

// Start starts sshd again after Stop (same port, host key and authorized_keys); no-op when running.
func (h *SSHHost) Start(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd != nil {
		return
	}
	// unshare without --fork execs in place: the pid is sh's, then sshd's. The bind mount exists
	// only in this namespace (private propagation), so each host sees its own ~/.ssh.
	script := `mount --bind "$1" "$2" && exec "$3" -D -f "$4" -E "$5"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		filepath.Dir(h.AuthorizedKeysPath), h.mountPoint, SSHD, h.configPath, h.LogPath)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	setProcAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start sshd: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("testenv: sshd exited at start:\n%s\n--- log ---\n%s", out.String(), h.Log(t))
		default:
		}
		if c, err := net.DialTimeout("tcp", h.Addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("testenv: sshd does not listen on %s:\n%s\n--- log ---\n%s", h.Addr, out.String(), h.Log(t))
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.cmd, h.done = cmd, done
}

// Stop stops sshd (connections already open keep their processes until they close).
func (h *SSHHost) Stop(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Kill()
	<-h.done
	h.cmd, h.done = nil, nil
}

// Log returns the sshd log.
func (h *SSHHost) Log(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(h.LogPath)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// ReadAuthorizedKeys returns this host's authorized_keys (nil when it does not exist).
func (h *SSHHost) ReadAuthorizedKeys(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(h.AuthorizedKeysPath)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WriteAuthorizedKeys replaces this host's authorized_keys (owned by the user, mode 600).
func (h *SSHHost) WriteAuthorizedKeys(t testing.TB, content []byte) {
	t.Helper()
	if err := os.WriteFile(h.AuthorizedKeysPath, content, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(h.AuthorizedKeysPath, 0o600); err != nil {
		t.Fatal(err)
	}
	chownUser(t, h.User, h.AuthorizedKeysPath)
}

// AuthorizeKey appends an authorized_keys line (a newline is added).
func (h *SSHHost) AuthorizeKey(t testing.TB, line string) {
	t.Helper()
	h.WriteAuthorizedKeys(t, append(h.ReadAuthorizedKeys(t), []byte(line+"\n")...))
}

// CanLogin logs in as userName with an OpenSSH or PEM private key, checking the host key, and runs
// `true`. It returns the handshake or command error.
func (h *SSHHost) CanLogin(userName, privateKeyPEM string) error {
	signer, err := gossh.ParsePrivateKey([]byte(privateKeyPEM))
	if err != nil {
		return fmt.Errorf("parse private key: %w", err)
	}
	client, err := gossh.Dial("tcp", h.Addr, &gossh.ClientConfig{
		User:              userName,
		Auth:              []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback:   gossh.FixedHostKey(h.hostKey),
		HostKeyAlgorithms: []string{h.hostKey.Type()},
		Timeout:           10 * time.Second,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	return sess.Run("true")
}

// NewSSHKey returns a new ed25519 key pair: the private key in OpenSSH PEM and its authorized_keys
// line with comment.
func NewSSHKey(t testing.TB, comment string) (privatePEM, authorizedLine string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, comment)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(gossh.MarshalAuthorizedKey(signer.PublicKey())))
	if comment != "" {
		line += " " + comment
	}
	return string(pem.EncodeToMemory(block)), line
}
