package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

const (
	dialTimeout    = 15 * time.Second // TCP connect and SSH handshake
	commandTimeout = 30 * time.Second // one remote script
	editAttempts   = 3                // compare-and-swap retries when the file changes under us

	exitChanged = 3 // the write script's exit status: the file is not what we read
	exitRefused = 5 // authorized_keys is a symlink or not a regular file
)

// Apply makes `to` the authorized key of username on every host, in place of `from`:
//
//  0. log in with `from` on every host (host keys checked): an error here changes nothing;
//  1. on every host, add `to`'s line (with the options of `from`'s line);
//  2. log in with `to` on every host;
//  3. on every host, remove `from`'s lines.
//
// When any step fails on a host, every host already changed gets its original authorized_keys
// back (byte for byte, unless someone else edited it meanwhile: then `to` is removed and `from`
// re-added), and the error names the host. Restoring is Apply(from=new, to=old).
func (t *target) Apply(ctx context.Context, _ rotators.Env, from, to rotators.Secret) error {
	if from == nil {
		return errors.New("no current key to log in with; import it with private_key")
	}
	fromSigner, err := signerOf(from)
	if err != nil {
		return fmt.Errorf("current key: %w", err)
	}
	toSigner, err := signerOf(to)
	if err != nil {
		return fmt.Errorf("new key: %w", err)
	}
	fromKey, toKey := fromSigner.PublicKey(), toSigner.PublicKey()

	hosts := make([]*hostState, len(t.cfg.hosts))
	defer func() {
		for _, h := range hosts {
			if h != nil {
				h.close()
			}
		}
	}()

	// 0. Every host lets the current key in, before any is changed.
	for i, addr := range t.cfg.hosts {
		c, err := t.connect(ctx, addr, fromSigner)
		if err != nil {
			return hostError(addr, "log in with the current key", err)
		}
		hosts[i] = &hostState{addr: addr, fromConn: c}
	}

	// 1. Add the new key.
	for i, h := range hosts {
		err := h.fromConn.edit(ctx, func(content []byte) ([]byte, bool) {
			out, stray := removeStray(content, fromKey, toKey)
			line := keyLine(optionsOf(out, fromKey), toKey, fromKey)
			out, added := addLine(out, toKey, line)
			return out, stray || added
		}, h)
		if err != nil {
			return t.undo(ctx, hosts, hostError(h.addr, "add the new key to authorized_keys", err))
		}
		if i == 0 {
			failpoint.Inject(failpoint.SSHAfterAddFirstHost)
		}
	}
	failpoint.Inject(failpoint.SSHAfterAddAllHosts)

	// 2. The new key logs in everywhere.
	for _, h := range hosts {
		c, err := t.connect(ctx, h.addr, toSigner)
		if err != nil {
			return t.undo(ctx, hosts, hostError(h.addr, "log in with the new key", err))
		}
		h.toConn = c
	}

	// 3. Remove the old key.
	for i, h := range hosts {
		err := h.toConn.edit(ctx, func(content []byte) ([]byte, bool) {
			return removeKey(content, fromKey)
		}, h)
		if err != nil {
			return t.undo(ctx, hosts, hostError(h.addr, "remove the old key from authorized_keys", err))
		}
		if i == 0 {
			failpoint.Inject(failpoint.SSHAfterRemoveFirstHost)
		}
	}
	return nil
}

// hostState is what Apply did on one host, to undo it.
type hostState struct {
	addr     string
	fromConn *conn // logged in with `from`
	toConn   *conn // logged in with `to` (from step 2)

	orig        []byte // authorized_keys before Apply (nil until read)
	origPresent bool
	written     bool   // Apply replaced the file at least once
	last        []byte // what Apply wrote last
}

func (h *hostState) close() {
	if h.fromConn != nil {
		h.fromConn.close()
	}
	if h.toConn != nil {
		h.toConn.close()
	}
}

// undo puts back the original authorized_keys of every host Apply changed, then returns cause
// with any host it could not put back.
func (t *target) undo(ctx context.Context, hosts []*hostState, cause error) error {
	var failed []string
	for _, h := range hosts {
		if h == nil || !h.written {
			continue
		}
		if err := h.undo(ctx); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", h.addr, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w; could not put back the original authorized_keys on %s (it still authorizes the new key; the next rotation from the current key removes it)",
			cause, strings.Join(failed, "; "))
	}
	return fmt.Errorf("%w (hosts already changed were put back)", cause)
}

func (h *hostState) undo(ctx context.Context) error {
	// Any live session will do; the one that wrote last surely is.
	conns := []*conn{h.toConn, h.fromConn}
	var err error
	for _, c := range conns {
		if c == nil {
			continue
		}
		var code int
		code, err = c.write(ctx, h.last, true, h.orig, h.origPresent)
		if err == nil {
			return nil
		}
		if code == exitChanged {
			// Someone else edited the file since: undo by key instead of by bytes.
			return h.undoByKey(ctx, c)
		}
	}
	return err
}

// undoByKey removes the new key and re-adds the old key's original line when it is gone.
func (h *hostState) undoByKey(ctx context.Context, c *conn) error {
	var fromLine []byte
	var fromKey gossh.PublicKey
	if h.fromConn != nil {
		fromKey = h.fromConn.signer.PublicKey()
		for _, l := range splitLines(h.orig) {
			if p, ok := parseLine(l); ok && sameKey(p.key, fromKey) {
				fromLine = bytes.TrimRight(l, "\r\n")
				break
			}
		}
	}
	return c.edit(ctx, func(content []byte) ([]byte, bool) {
		out, removed := content, false
		if h.toConn != nil {
			out, removed = removeKey(out, h.toConn.signer.PublicKey())
		}
		added := false
		if fromLine != nil {
			out, added = addLine(out, fromKey, string(fromLine))
		}
		return out, removed || added
	}, nil)
}

func hostError(addr, what string, err error) error {
	return fmt.Errorf("host %s: %s: %w", addr, what, err)
}

// Verify logs in with s on every host. A host that answers that the key is not accepted makes it
// a wrapped rotators.ErrRejected (the proof recovery needs); a host that cannot be reached (or
// shows a host key that host_keys does not hold) is a plain error.
func (t *target) Verify(ctx context.Context, _ rotators.Env, s rotators.Secret) error {
	signer, err := signerOf(s)
	if err != nil {
		return err
	}
	var rejected, other []string
	for _, addr := range t.cfg.hosts {
		c, err := t.connect(ctx, addr, signer)
		if err != nil {
			msg := hostError(addr, "log in", err).Error()
			if errors.Is(err, rotators.ErrRejected) {
				rejected = append(rejected, msg)
			} else {
				other = append(other, msg)
			}
			continue
		}
		c.close()
	}
	switch {
	case len(rejected) > 0:
		return fmt.Errorf("%w: %s", rotators.ErrRejected, strings.Join(append(rejected, other...), "; "))
	case len(other) > 0:
		return errors.New(strings.Join(other, "; "))
	}
	return nil
}

// conn is one SSH connection to a host as the role's user.
type conn struct {
	client *gossh.Client
	signer gossh.Signer
	stop   func() bool
}

func (c *conn) close() {
	c.stop()
	c.client.Close()
}

// connect logs in to addr with signer. Errors: a wrapped rotators.ErrRejected when the server
// refuses the key; otherwise the network or host key error.
func (t *target) connect(ctx context.Context, addr string, signer gossh.Signer) (*conn, error) {
	cfg := &gossh.ClientConfig{
		User:    t.cfg.username,
		Auth:    []gossh.AuthMethod{gossh.PublicKeys(signer)},
		Timeout: dialTimeout,
	}
	if t.cfg.insecure {
		cfg.HostKeyCallback = gossh.InsecureIgnoreHostKey() //nolint:gosec // the operator's explicit choice
	} else {
		cfg.HostKeyCallback = t.cfg.hostKeyCfg.callback
		cfg.HostKeyAlgorithms = t.cfg.hostKeyCfg.algorithms(addr)
	}
	d := net.Dialer{Timeout: dialTimeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(dialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	sc, chans, reqs, err := gossh.NewClientConn(nc, addr, cfg)
	if err != nil {
		nc.Close()
		return nil, classify(err)
	}
	_ = nc.SetDeadline(time.Time{})
	client := gossh.NewClient(sc, chans, reqs)
	return &conn{client: client, signer: signer, stop: context.AfterFunc(ctx, func() { client.Close() })}, nil
}

// classify tells a refused key from other handshake failures.
func classify(err error) error {
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &ke) && len(ke.Want) > 0:
		return errors.New("the host key does not match host_keys (a changed host or a man in the middle); nothing was changed on it")
	case errors.As(err, &ke):
		return errors.New("host_keys has no key for this host")
	case errors.As(err, &re):
		return errors.New("the host key is marked @revoked in host_keys")
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%w: the key is not accepted for this user", rotators.ErrRejected)
	}
	return err
}

// run runs a POSIX sh script (fed on stdin, so it never appears in a process list) and returns
// its stdout and exit status.
func (c *conn) run(ctx context.Context, script string) (stdout []byte, code int, err error) {
	sess, err := c.client.NewSession()
	if err != nil {
		return nil, -1, fmt.Errorf("open session: %w", err)
	}
	defer sess.Close()
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	var out, errOut bytes.Buffer
	sess.Stdin = strings.NewReader(script)
	sess.Stdout = &out
	sess.Stderr = &errOut
	err = sess.Run("sh")
	if err == nil {
		return out.Bytes(), 0, nil
	}
	msg := strings.TrimSpace(errOut.String())
	var exit *gossh.ExitError
	if errors.As(err, &exit) {
		if msg == "" {
			msg = fmt.Sprintf("remote script exited with status %d", exit.ExitStatus())
		}
		return out.Bytes(), exit.ExitStatus(), errors.New(msg)
	}
	if ctx.Err() != nil {
		return nil, -1, fmt.Errorf("remote script: %w", ctx.Err())
	}
	if msg != "" {
		return nil, -1, fmt.Errorf("remote script: %v: %s", err, msg)
	}
	return nil, -1, fmt.Errorf("remote script: %w", err)
}

// read returns ~/.ssh/authorized_keys (present=false when it does not exist).
func (c *conn) read(ctx context.Context) (content []byte, present bool, err error) {
	out, _, err := c.run(ctx, readScript)
	if err != nil {
		return nil, false, fmt.Errorf("read authorized_keys: %w", err)
	}
	switch {
	case bytes.HasPrefix(out, []byte("present\n")):
		return out[len("present\n"):], true, nil
	case bytes.Equal(out, []byte("absent\n")):
		return []byte{}, false, nil
	}
	return nil, false, errors.New("read authorized_keys: unexpected output from the remote shell (is the login shell a POSIX shell?)")
}

// write replaces authorized_keys with content (present=false: removes it) if it still holds
// expected (expectedPresent=false: does not exist).
func (c *conn) write(ctx context.Context, expected []byte, expectedPresent bool, content []byte, present bool) (int, error) {
	_, code, err := c.run(ctx, writeScript(expected, expectedPresent, content, present))
	if err != nil {
		return code, fmt.Errorf("write authorized_keys: %w", err)
	}
	return 0, nil
}

// edit applies fn to authorized_keys as a compare-and-swap, retried when the file changes between
// the read and the write. h (may be nil) records the original and the written bytes for undo.
func (c *conn) edit(ctx context.Context, fn func([]byte) ([]byte, bool), h *hostState) error {
	for attempt := 0; attempt < editAttempts; attempt++ {
		content, present, err := c.read(ctx)
		if err != nil {
			return err
		}
		if h != nil && !h.written {
			// The original is the last content read before Apply's first write.
			h.orig, h.origPresent = append([]byte{}, content...), present
		}
		out, changed := fn(content)
		if !changed {
			return nil
		}
		code, err := c.write(ctx, content, present, out, true)
		if code == exitChanged {
			continue
		}
		if err != nil {
			return err
		}
		if h != nil {
			h.written, h.last = true, out
		}
		return nil
	}
	return errors.New("authorized_keys kept changing while it was edited; try again")
}

const readScript = `f="$HOME/.ssh/authorized_keys"
if [ -L "$f" ]; then echo "~/.ssh/authorized_keys is a symbolic link; the plugin does not replace it" >&2; exit 5; fi
if [ -f "$f" ]; then printf 'present\n'; exec cat "$f"; fi
if [ -e "$f" ]; then echo "~/.ssh/authorized_keys is not a regular file" >&2; exit 5; fi
printf 'absent\n'
`

// writeScript is a POSIX sh script that replaces ~/.ssh/authorized_keys by content atomically
// (a temp file in ~/.ssh, mode 600, renamed over it) if the file still holds expected, and exits
// with exitChanged otherwise. The bytes travel as printf octal escapes, so any byte (and the
// absence of a final newline) survives the shell.
func writeScript(expected []byte, expectedPresent bool, content []byte, present bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `umask 077
d="$HOME/.ssh"
f="$d/authorized_keys"
t="$d/.authorized_keys.vault-plugin-rotation.$$"
e="$t.expected"
fail() { echo "$1" >&2; exit "${2:-1}"; }
if [ -L "$f" ]; then fail "~/.ssh/authorized_keys is a symbolic link; the plugin does not replace it" %[1]d; fi
if [ -e "$f" ] && [ ! -f "$f" ]; then fail "~/.ssh/authorized_keys is not a regular file" %[1]d; fi
[ -d "$d" ] || mkdir -m 700 "$d" || fail "cannot create ~/.ssh"
trap 'rm -f "$t" "$e"' EXIT
rm -f "$t" "$e"
`, exitRefused)
	if expectedPresent {
		b.WriteString("{\n")
		writePrintf(&b, expected)
		fmt.Fprintf(&b, `} > "$e" || fail "cannot write a temporary file in ~/.ssh"
[ -f "$f" ] || fail "authorized_keys changed while it was edited" %[1]d
cmp -s "$e" "$f" || fail "authorized_keys changed while it was edited" %[1]d
`, exitChanged)
	} else {
		fmt.Fprintf(&b, "[ -e \"$f\" ] && fail \"authorized_keys changed while it was edited\" %d\n", exitChanged)
	}
	if !present {
		b.WriteString("rm -f \"$f\" || fail \"cannot remove authorized_keys\"\nexit 0\n")
		return b.String()
	}
	b.WriteString("(set -C; : > \"$t\") || fail \"cannot create a temporary file in ~/.ssh\"\n{\n")
	writePrintf(&b, content)
	b.WriteString(`} > "$t" || fail "cannot write a temporary file in ~/.ssh"
chmod 600 "$t" || fail "cannot chmod the temporary file"
mv -f "$t" "$f" || fail "cannot rename the temporary file over authorized_keys"
exit 0
`)
	return b.String()
}

// writePrintf writes printf commands that print data exactly: safe bytes as themselves, every
// other byte (quotes, backslash, percent, newline, non-ASCII) as a 3-digit octal escape.
func writePrintf(b *strings.Builder, data []byte) {
	const chunk = 256
	if len(data) == 0 {
		b.WriteString("printf ''\n")
		return
	}
	for len(data) > 0 {
		n := chunk
		if n > len(data) {
			n = len(data)
		}
		b.WriteString("printf '")
		for _, c := range data[:n] {
			if isSafe(c) {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(b, `\%03o`, c)
			}
		}
		b.WriteString("'\n")
		data = data[n:]
	}
}

func isSafe(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte(" +/=@.,:_-", c) >= 0
}
