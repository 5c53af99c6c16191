package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

const (
	dialTimeout    = 15 * time.Second // TCP connect and SSH handshake, each
	commandTimeout = 30 * time.Second // one remote script, from opening its session to its exit status
	editAttempts   = 3                // compare-and-swap retries when the file changes under us

	// scriptBound is how long the write script may live on a host: a watchdog it starts first
	// kills it then, whether or not a client still waits (docs/decisions.md, "SSH settle time").
	scriptBound = commandTimeout
	// hostBudget bounds the work of one host in one call: two logins and a read and a write
	// for each of two edits.
	hostBudget = 2*dialTimeout + 4*commandTimeout

	// settleTime is what SettleTime returns: the script can change authorized_keys only after the
	// client confirmed the change, which it does before it gives up, and only while the script
	// lives, at most scriptBound after it started, which was before the confirmation. Twice the
	// bound leaves room for a loaded host (the watchdog polls once a second).
	settleTime = 2 * scriptBound

	// The write script's exit statuses when it stops before the rename; authorized_keys is then
	// certainly unchanged. Any other status (a signal, a shell that cannot run the script) or a
	// missing one leaves the outcome unknown.
	exitChanged     = 3 // the file is not what we read
	exitFailed      = 4 // a step before the rename failed (mkdir, temporary file, chmod, mv)
	exitRefused     = 5 // authorized_keys is a symlink or not a regular file
	exitMismatch    = 6 // a temporary file does not hold the bytes that were sent (cksum)
	exitUnconfirmed = 7 // the client did not confirm the change (gone, or past its deadline)

	readyLine   = "ready\n" // the write script's stdout when only the rename is left
	confirmLine = "go\n"    // the client's answer on stdin: rename now
)

// Apply makes `to` the authorized key of username on every host, in place of `from`:
//
//  0. log in with `from` on every host (host keys checked): an error here changes nothing;
//  1. on every host, add `to`'s line (with the options of `from`'s line);
//  2. log in with `to` on every host;
//  3. on every host, remove `from`'s lines.
//
// When any step fails on a host, every host Apply changed, or may have changed (a confirmed write
// whose answer was lost), gets its original authorized_keys back (byte for byte, unless someone
// else edited it meanwhile: then `to` is removed and `from`'s line re-added), and the error names
// the host. The error wraps rotators.ErrNotApplied only when every host certainly holds what it
// held before: nothing was written, or every changed host was put back and no confirmed write
// went unanswered (its script may still rename after undo looked). A write that was never
// confirmed changed nothing, whatever happened to its connection. Restoring is
// Apply(from=new, to=old).
func (t *target) Apply(ctx context.Context, _ rotators.Env, from, to rotators.Secret) error {
	if from == nil {
		return rotators.NotApplied(errors.New("no current key to log in with; import it with private_key"))
	}
	fromSigner, err := signerOf(from)
	if err != nil {
		return rotators.NotApplied(fmt.Errorf("current key: %w", err))
	}
	toSigner, err := signerOf(to)
	if err != nil {
		return rotators.NotApplied(fmt.Errorf("new key: %w", err))
	}
	a := &applyRun{t: t, from: fromSigner, to: toSigner, hosts: make([]*hostState, len(t.cfg.hosts))}
	defer a.close()
	fromKey, toKey := fromSigner.PublicKey(), toSigner.PublicKey()

	// 0. Every host lets the current key in, before any is changed.
	for i, addr := range t.cfg.hosts {
		c, err := t.connect(ctx, addr, fromSigner)
		if err != nil {
			return rotators.NotApplied(hostError(addr, "log in with the current key", err))
		}
		a.hosts[i] = &hostState{addr: addr, fromConn: c}
	}
	if sameKey(fromKey, toKey) {
		return nil // already the key: removing `from` would remove `to`
	}

	// 1. Add the new key.
	for i, h := range a.hosts {
		err := h.fromConn.edit(ctx, func(content []byte) ([]byte, bool) {
			out, stray := removeStray(content, fromKey, toKey)
			line := keyLine(optionsOf(out, fromKey), toKey, fromKey)
			out, added := addLine(out, toKey, line)
			return out, stray || added
		}, h)
		if err != nil {
			return a.fail(ctx, hostError(h.addr, "add the new key to authorized_keys", err))
		}
		if i == 0 {
			failpoint.Inject(failpoint.SSHAfterAddFirstHost)
		}
	}
	failpoint.Inject(failpoint.SSHAfterAddAllHosts)

	// 2. The new key logs in everywhere.
	for _, h := range a.hosts {
		c, err := t.connect(ctx, h.addr, toSigner)
		if err != nil {
			return a.fail(ctx, hostError(h.addr, "log in with the new key", err))
		}
		h.toConn = c
	}

	// 3. Remove the old key (and strays that replaced it, as Finish does). The new key logs in
	// everywhere now, so a failure here is not undone: undoing some hosts and not others could
	// leave no key that works on all of them. The error is plain (the engine keeps both keys),
	// and recovery, finding the new key live, finishes this step (Finish).
	for i, h := range a.hosts {
		err := h.toConn.edit(ctx, func(content []byte) ([]byte, bool) {
			return retire(content, fromKey, toKey)
		}, h)
		if err != nil {
			return fmt.Errorf("%w (the new key logs in on every host; the old key is removed once the hosts answer)",
				hostError(h.addr, "remove the old key from authorized_keys", err))
		}
		if i == 0 {
			failpoint.Inject(failpoint.SSHAfterRemoveFirstHost)
		}
	}
	return nil
}

// applyRun is one Apply: its keys and what it did on each host.
type applyRun struct {
	t        *target
	from, to gossh.Signer
	hosts    []*hostState // nil after a host whose login failed in step 0
}

func (a *applyRun) close() {
	for _, h := range a.hosts {
		if h != nil {
			h.close()
		}
	}
}

// hostState is what Apply did on one host, to undo it.
type hostState struct {
	addr     string
	fromConn *conn // logged in with `from`
	toConn   *conn // logged in with `to` (from step 2)

	orig        []byte // authorized_keys before Apply's first write (nil until read)
	origPresent bool
	touched     bool     // a write of Apply reached the host, or may have (its answer was lost)
	wrote       [][]byte // every content Apply wrote or may have written
	// uncertain: a write was confirmed but got no answer. Its script may still rename after undo
	// looked (until SettleTime), so undo cannot prove the host is as before.
	uncertain bool
}

// record notes a content Apply wrote, or may have written; h may be nil (nothing to record).
func (h *hostState) record(content []byte) {
	if h != nil {
		h.touched = true
		h.wrote = append(h.wrote, content)
	}
}

func (h *hostState) close() {
	if h.fromConn != nil {
		h.fromConn.close()
	}
	if h.toConn != nil {
		h.toConn.close()
	}
}

// fail puts back the original authorized_keys of every host Apply touched and returns cause:
// wrapped as rotators.ErrNotApplied when every host holds what it held before, plain (the
// outcome is unknown) with the hosts it could not put back otherwise.
func (a *applyRun) fail(ctx context.Context, cause error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		// The caller is going away (the mount closing, the request cancelled): no undo, which
		// could take long. The outcome is unknown; recovery asks the hosts and removes whichever
		// key is not kept (Finish).
		return fmt.Errorf("%w (cancelled before the hosts were put back)", cause)
	}
	// Apply's own deadline may be what failed it: the undo gets a bound of its own, but a caller
	// that goes away meanwhile still stops it (recovery finishes the job).
	parent := ctx
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), hostBudget*time.Duration(len(a.hosts)))
	defer cancel()
	defer context.AfterFunc(parent, func() {
		if errors.Is(parent.Err(), context.Canceled) {
			cancel()
		}
	})()
	var failed, uncertain []string
	undone := 0
	for _, h := range a.hosts {
		if h == nil || !h.touched {
			continue
		}
		if err := a.undo(ctx, h); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", h.addr, err))
			continue
		}
		if h.uncertain {
			uncertain = append(uncertain, h.addr)
		}
		undone++
	}
	switch {
	case len(failed) > 0:
		return fmt.Errorf("%w; could not put back the original authorized_keys on %s (it may still authorize the new key; the next rotation from the current key removes it)",
			cause, strings.Join(failed, "; "))
	case len(uncertain) > 0:
		return fmt.Errorf("%w (hosts already changed were put back, but a confirmed write on %s got no answer: it may still change the file)",
			cause, strings.Join(uncertain, ", "))
	case undone == 0:
		return rotators.NotApplied(cause)
	}
	return rotators.NotApplied(fmt.Errorf("%w (hosts already changed were put back)", cause))
}

// undo puts back h's original authorized_keys through a live connection of Apply, else through a
// new one: with the old key (authorized unless step 3 removed it here), then with the new one.
func (a *applyRun) undo(ctx context.Context, h *hostState) error {
	err := errors.New("no connection")
	for _, c := range []*conn{h.toConn, h.fromConn} {
		if c == nil || c.broken {
			continue
		}
		if err = h.restore(ctx, c, a.from.PublicKey(), a.to.PublicKey()); err == nil || !c.broken {
			return err
		}
	}
	for _, signer := range []gossh.Signer{a.from, a.to} {
		c, cerr := a.t.connect(ctx, h.addr, signer)
		if cerr != nil {
			err = fmt.Errorf("log in again: %w", cerr)
			if errors.Is(cerr, rotators.ErrRejected) {
				continue
			}
			return err
		}
		err = h.restore(ctx, c, a.from.PublicKey(), a.to.PublicKey())
		c.close()
		if err == nil || !c.broken {
			return err
		}
	}
	return err
}

// restore puts back the original authorized_keys as a compare-and-swap: nothing to do when the
// file holds it; the original bytes when the file holds what Apply wrote (or may have); when
// someone else edited it since, by key: `to` removed (unless the original had it) and `from`'s
// original line re-added when gone.
func (h *hostState) restore(ctx context.Context, c *conn, fromKey, toKey gossh.PublicKey) error {
	for attempt := 0; attempt < editAttempts; attempt++ {
		content, present, err := c.read(ctx)
		if err != nil {
			return err
		}
		out, outPresent := h.orig, h.origPresent
		switch {
		case present == h.origPresent && bytes.Equal(content, h.orig):
			return nil
		case present && h.wroteContains(content):
		default:
			var changed bool
			if out, changed = h.byKey(content, fromKey, toKey); !changed {
				return nil
			}
			outPresent = true
		}
		code, err := c.write(ctx, content, present, out, outPresent)
		if code == exitChanged {
			continue
		}
		return err
	}
	return errors.New("authorized_keys kept changing while it was put back")
}

func (h *hostState) wroteContains(content []byte) bool {
	for _, w := range h.wrote {
		if bytes.Equal(w, content) {
			return true
		}
	}
	return false
}

// byKey removes `to` (unless the original had it) and re-adds `from`'s original line when gone.
func (h *hostState) byKey(content []byte, fromKey, toKey gossh.PublicKey) ([]byte, bool) {
	out, removed := content, false
	if !hasKey(h.orig, toKey) {
		out, removed = removeKey(out, toKey)
	}
	added := false
	for _, l := range splitLines(h.orig) {
		if p, ok := parseLine(l); ok && sameKey(p.key, fromKey) {
			out, added = addLine(out, fromKey, string(bytes.TrimRight(l, "\r\n")))
			break
		}
	}
	return out, removed || added
}

// Finish implements rotators.Finisher: recovery calls it when it rolls an interrupted rotation
// forward (the new key logs in everywhere), so that exactly the new key is left. On every host it
// logs in with new and removes every line of old's key and our stray lines that replaced old
// (retire); a host where that is already so is not written. It goes on past a failed host and
// names each one; a host that refuses new makes the error a wrapped rotators.ErrRejected.
func (t *target) Finish(ctx context.Context, _ rotators.Env, old, new rotators.Secret) error {
	if old == nil {
		return nil // no retired key
	}
	newSigner, err := signerOf(new)
	if err != nil {
		return fmt.Errorf("new key: %w", err)
	}
	oldKey, err := publicKeyOf(old)
	if err != nil {
		return fmt.Errorf("old key: %w", err)
	}
	newKey := newSigner.PublicKey()
	if sameKey(oldKey, newKey) {
		return nil
	}
	var rejected, other []string
	for _, addr := range t.cfg.hosts {
		err := t.finishHost(ctx, addr, newSigner, oldKey)
		switch {
		case err == nil:
		case errors.Is(err, rotators.ErrRejected):
			rejected = append(rejected, err.Error())
		default:
			other = append(other, err.Error())
		}
	}
	switch {
	case len(rejected) > 0:
		return fmt.Errorf("%w: %s", rotators.ErrRejected, strings.Join(append(rejected, other...), "; "))
	case len(other) > 0:
		return errors.New(strings.Join(other, "; "))
	}
	return nil
}

func (t *target) finishHost(ctx context.Context, addr string, signer gossh.Signer, oldKey gossh.PublicKey) error {
	c, err := t.connect(ctx, addr, signer)
	if err != nil {
		return hostError(addr, "log in with the new key", err)
	}
	defer c.close()
	err = c.edit(ctx, func(content []byte) ([]byte, bool) {
		return retire(content, oldKey, signer.PublicKey())
	}, nil)
	if err != nil {
		return hostError(addr, "remove the old key from authorized_keys", err)
	}
	return nil
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
	client  *gossh.Client
	signer  gossh.Signer
	stop    func() bool
	timeout time.Duration // of each remote script: commandTimeout
	broken  bool          // a script got no exit status: the connection may be dead
	// confirmHook (tests only) is called right before a write's confirmation is sent.
	confirmHook func()
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
	stopHandshake := context.AfterFunc(ctx, func() { nc.Close() })
	sc, chans, reqs, err := gossh.NewClientConn(nc, addr, cfg)
	stopHandshake()
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, classify(err)
	}
	_ = nc.SetDeadline(time.Time{})
	client := gossh.NewClient(sc, chans, reqs)
	timeout := t.cmdTimeout
	if timeout <= 0 {
		timeout = commandTimeout
	}
	c := &conn{client: client, signer: signer, stop: context.AfterFunc(ctx, func() { client.Close() }), timeout: timeout}
	if t.confirmHook != nil {
		c.confirmHook = func() { t.confirmHook(addr) }
	}
	return c, nil
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
// its stdout and exit status (-1: none). Everything from opening the session to the exit status
// is bounded by c.timeout (commandTimeout). With confirm, the script prints readyLine before its
// one change and waits for confirmLine on stdin, which run sends only while its deadline has not
// passed; a failed script that was never sent its confirmation has the status exitUnconfirmed.
func (c *conn) run(ctx context.Context, script string, confirm bool) (stdout []byte, code int, err error) {
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, fmt.Errorf("no answer within %s", c.timeout))
	defer cancel()
	// The bound closes the whole connection, not only the session: opening a session has no
	// bound of its own, and closing one waits for the host's answer, which a hung host never
	// sends. The connection is then dead; undo opens a new one (see applyRun.undo).
	stop := context.AfterFunc(ctx, func() { c.client.Close() })
	defer stop()
	failed := func(what string, err error) ([]byte, int, error) {
		// Before the script started: it was never confirmed either.
		c.broken = true
		code := -1
		if confirm {
			code = exitUnconfirmed
		}
		if ctx.Err() != nil {
			return nil, code, fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
		return nil, code, fmt.Errorf("%s: %w", what, err)
	}
	sess, err := c.client.NewSession()
	if err != nil {
		return failed("open session", err)
	}
	defer sess.Close()
	in, err := sess.StdinPipe()
	if err != nil {
		return failed("open session", err)
	}
	out := newScriptOutput(confirm)
	var errOut bytes.Buffer
	sess.Stdout = out
	sess.Stderr = &errOut
	if err := sess.Start("sh"); err != nil {
		return failed("remote script", err)
	}
	var confirmed atomic.Bool
	go feed(ctx, in, script, out.ready, func() {
		confirmed.Store(true)
		if c.confirmHook != nil {
			c.confirmHook()
		}
	})
	err = sess.Wait()
	if err == nil {
		return out.Bytes(), 0, nil
	}
	stdout, code, err = c.runError(ctx, err, out.Bytes(), strings.TrimSpace(errOut.String()))
	if confirm && !confirmed.Load() && !stoppedBeforeChange(code) {
		// The script never got its confirmation, so it cannot have changed anything, whatever
		// else happened (the session is closed now: a confirmation can no longer reach it).
		code = exitUnconfirmed
	}
	return stdout, code, err
}

// runError turns a failed session into run's results.
func (c *conn) runError(ctx context.Context, err error, stdout []byte, msg string) ([]byte, int, error) {
	var exit *gossh.ExitError
	switch {
	case errors.As(err, &exit) && exit.Signal() != "":
		return stdout, exit.ExitStatus(), fmt.Errorf("remote script killed by signal %s", exit.Signal())
	case errors.As(err, &exit):
		if msg == "" {
			msg = fmt.Sprintf("remote script exited with status %d", exit.ExitStatus())
		}
		return stdout, exit.ExitStatus(), errors.New(msg)
	}
	c.broken = true
	switch {
	case ctx.Err() != nil:
		return nil, -1, fmt.Errorf("remote script: %w", context.Cause(ctx))
	case msg != "":
		return nil, -1, fmt.Errorf("remote script: %v: %s", err, msg)
	}
	return nil, -1, fmt.Errorf("remote script: %w", err)
}

// feed writes script to the shell's stdin. Without ready it then closes stdin; with it, it waits
// for the script's readyLine and answers confirmLine, unless ctx is done: a script that gets no
// confirmation exits with exitUnconfirmed and changes nothing. onConfirm (may be nil) is called
// right before the confirmation is sent.
func feed(ctx context.Context, in io.WriteCloser, script string, ready <-chan struct{}, onConfirm func()) {
	defer in.Close()
	if _, err := io.WriteString(in, script); err != nil || ready == nil {
		return
	}
	select {
	case <-ready:
		if ctx.Err() == nil {
			if onConfirm != nil {
				onConfirm()
			}
			_, _ = io.WriteString(in, confirmLine)
		}
	case <-ctx.Done():
	}
}

// scriptOutput collects a script's stdout; with confirm, ready is closed once readyLine came.
type scriptOutput struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan struct{} // nil without confirm
	seen  bool
}

func newScriptOutput(confirm bool) *scriptOutput {
	o := &scriptOutput{}
	if confirm {
		o.ready = make(chan struct{})
	}
	return o
}

func (o *scriptOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if o.ready != nil && !o.seen && bytes.Contains(o.buf.Bytes(), []byte(readyLine)) {
		o.seen = true
		close(o.ready)
	}
	return len(p), nil
}

func (o *scriptOutput) Bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]byte(nil), o.buf.Bytes()...)
}

// read returns ~/.ssh/authorized_keys (present=false when it does not exist).
func (c *conn) read(ctx context.Context) (content []byte, present bool, err error) {
	out, _, err := c.run(ctx, readScript, false)
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
	_, code, err := c.run(ctx, writeScript(expected, expectedPresent, content, present), true)
	if err != nil {
		return code, fmt.Errorf("write authorized_keys: %w", err)
	}
	return 0, nil
}

// edit applies fn to authorized_keys as a compare-and-swap, retried when the file changes between
// the read and the write. h (may be nil) records the original and every content written, or
// perhaps written (a confirmed write whose answer was lost), for undo.
func (c *conn) edit(ctx context.Context, fn func([]byte) ([]byte, bool), h *hostState) error {
	for attempt := 0; attempt < editAttempts; attempt++ {
		content, present, err := c.read(ctx)
		if err != nil {
			return err
		}
		if h != nil && !h.touched {
			// The original is the last content read before Apply's first write.
			h.orig, h.origPresent = append([]byte{}, content...), present
		}
		out, changed := fn(content)
		if !changed {
			return nil
		}
		code, err := c.write(ctx, content, present, out, true)
		switch {
		case err == nil:
			h.record(out)
			return nil
		case code == exitChanged:
			continue
		case !stoppedBeforeChange(code):
			// Confirmed, and no answer: the file may hold out now, or later.
			h.record(out)
			if h != nil {
				h.uncertain = true
			}
		}
		return err
	}
	return errors.New("authorized_keys kept changing while it was edited; try again")
}

// stoppedBeforeChange reports whether a write script's exit status is one of its own stops
// before the rename (or removal): authorized_keys then certainly holds what it held.
func stoppedBeforeChange(code int) bool {
	switch code {
	case exitChanged, exitFailed, exitRefused, exitMismatch, exitUnconfirmed:
		return true
	}
	return false
}

const readScript = `f="$HOME/.ssh/authorized_keys"
if [ -L "$f" ]; then echo "~/.ssh/authorized_keys is a symbolic link; the plugin does not replace it" >&2; exit 5; fi
if [ -f "$f" ]; then printf 'present\n'; exec cat "$f"; fi
if [ -e "$f" ]; then echo "~/.ssh/authorized_keys is not a regular file" >&2; exit 5; fi
printf 'absent\n'
`

// writeScript is a POSIX sh script that replaces ~/.ssh/authorized_keys by content atomically
// (a temp file in ~/.ssh, mode 600, renamed over it) if the file still holds expected, and exits
// with exitChanged otherwise (README, "What a rotation does on the hosts"):
//
//   - the bytes travel as printf octal escapes (writePrintf), so any byte (and the absence of a
//     final newline) survives the shell; before it compares or renames, the script checks each
//     temporary file against the cksum of the bytes it was meant to hold (exitMismatch);
//   - it starts a watchdog that kills it scriptBound after it started, and it makes its one
//     change (the rename, or the removal when present is false) only after it printed readyLine
//     and read confirmLine from the client (exitUnconfirmed otherwise), so a host can change
//     at most scriptBound after the client gave up (SettleTime);
//   - every stop before the change has its own exit status (exitChanged ... exitUnconfirmed).
//
// The script is one { } group: the shell reads all of it before it runs any of it, so that the
// confirmation is the only thing left on stdin.
func writeScript(expected []byte, expectedPresent bool, content []byte, present bool) string {
	return scriptWriter{encode: writePrintf, bound: scriptBound}.script(expected, expectedPresent, content, present)
}

// scriptWriter makes write scripts; tests change its parts (an encoder that loses bytes, a
// short bound) to show what the script does then.
type scriptWriter struct {
	encode func(*strings.Builder, []byte)
	bound  time.Duration
}

func (sw scriptWriter) script(expected []byte, expectedPresent bool, content []byte, present bool) string {
	encode := sw.encode
	var b strings.Builder
	fmt.Fprintf(&b, `{
w=$$
( n=0
  while [ "$n" -lt %[5]d ] && kill -0 "$w" 2>/dev/null; do sleep 1; n=$((n+1)); done
  kill -0 "$w" 2>/dev/null && kill -KILL "$w"
) </dev/null >/dev/null 2>&1 &
umask 077
d="$HOME/.ssh"
f="$d/authorized_keys"
t="$d/.authorized_keys.vault-plugin-rotation.$$"
e="$t.expected"
fail() { echo "$1" >&2; exit "${2:-%[3]d}"; }
if [ -L "$f" ]; then fail "~/.ssh/authorized_keys is a symbolic link; the plugin does not replace it" %[1]d; fi
if [ -e "$f" ] && [ ! -f "$f" ]; then fail "~/.ssh/authorized_keys is not a regular file" %[1]d; fi
[ -d "$d" ] || mkdir -m 700 "$d" || fail "cannot create ~/.ssh"
trap 'rm -f "$t" "$e"' EXIT
rm -f "$t" "$e"
check() {
	c=$2
	s=$(cksum < "$1") || fail "cannot run cksum on a temporary file in ~/.ssh"
	set -- $s
	[ "$1 $2" = "$c" ] || fail "a temporary file in ~/.ssh does not hold the bytes that were sent (cksum $1 $2, want $c); authorized_keys was not changed" %[2]d
}
confirm() {
	printf '%[6]s'
	IFS= read -r g || fail "the client did not confirm the change (gone or past its deadline); authorized_keys was not changed" %[4]d
	[ "$g" = '%[7]s' ] || fail "the client did not confirm the change; authorized_keys was not changed" %[4]d
}
`, exitRefused, exitMismatch, exitFailed, exitUnconfirmed, int(sw.bound/time.Second),
		strings.ReplaceAll(readyLine, "\n", `\n`), strings.TrimSuffix(confirmLine, "\n"))
	if expectedPresent {
		b.WriteString("{\n")
		encode(&b, expected)
		fmt.Fprintf(&b, `} > "$e" || fail "cannot write a temporary file in ~/.ssh"
check "$e" '%[2]s'
[ -f "$f" ] || fail "authorized_keys changed while it was edited" %[1]d
cmp -s "$e" "$f" || fail "authorized_keys changed while it was edited" %[1]d
`, exitChanged, cksum(expected))
	} else {
		fmt.Fprintf(&b, "[ -e \"$f\" ] && fail \"authorized_keys changed while it was edited\" %d\n", exitChanged)
	}
	if !present {
		b.WriteString("confirm\nrm -f \"$f\" || fail \"cannot remove authorized_keys\"\nexit 0\n}\n")
		return b.String()
	}
	b.WriteString("(set -C; : > \"$t\") || fail \"cannot create a temporary file in ~/.ssh\"\n{\n")
	encode(&b, content)
	fmt.Fprintf(&b, `} > "$t" || fail "cannot write a temporary file in ~/.ssh"
check "$t" '%s'
chmod 600 "$t" || fail "cannot chmod the temporary file"
confirm
mv -f "$t" "$f" || fail "cannot rename the temporary file over authorized_keys"
exit 0
}
`, cksum(content))
	return b.String()
}

// writePrintf writes printf commands that print data exactly: safe bytes as themselves, every
// other byte (quotes, backslash, percent, newline, non-ASCII, and '-') as a 3-digit octal escape.
// '-' is never safe: a format argument that starts with '-' is taken for an option by dash's and
// bash's printf, which then print nothing, and the data is split into chunks wherever the size
// says. No argument can start with '-' this way, whatever the bytes.
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
	return strings.IndexByte(" +/=@.,:_", c) >= 0
}

// SettleTime implements rotators.Settler: after a client gave up on a write (its reply lost or
// late), the host's write script can still rename for at most scriptBound (see settleTime).
func (t *target) SettleTime() time.Duration { return settleTime }

// ApplyTimeout makes the target rotators.Bounded: Apply (and Finish) visit the hosts one after
// another, each within hostBudget.
func (t *target) ApplyTimeout() time.Duration {
	return hostBudget * time.Duration(len(t.cfg.hosts))
}

// VerifyTimeout: Verify logs in on every host, one after another.
func (t *target) VerifyTimeout() time.Duration {
	return 2 * dialTimeout * time.Duration(len(t.cfg.hosts))
}
