package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSSHCksumMatchesPOSIXCksum: the Go cksum prints what the cksum binary prints, on edge sizes
// (the byte count's bytes go into the CRC) and random contents.
func TestSSHCksumMatchesPOSIXCksum(t *testing.T) {
	bin, err := exec.LookPath("cksum")
	if err != nil {
		t.Fatalf("cksum binary: %v", err)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	inputs := [][]byte{nil, {0}, {0xff}, []byte("a"), []byte("123456789"), bytes.Repeat([]byte{0}, 256), bytes.Repeat([]byte{0xff}, 65536)}
	for _, n := range []int{255, 256, 257, 65535, 65536, 65537, 1 << 20} {
		inputs = append(inputs, randomBytes(rng, n))
	}
	for range 40 {
		inputs = append(inputs, randomBytes(rng, rng.IntN(70000)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, in := range inputs {
		cmd := exec.CommandContext(ctx, bin)
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cksum(in), strings.TrimSpace(string(out)); got != want {
			t.Fatalf("%d bytes: Go %q, cksum %q", len(in), got, want)
		}
	}
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// dashAtBoundaries is the regression file of issue 8: a '-' at every 256-byte boundary, where
// the old encoder started a new printf argument with it, and no final newline. With lastChunk
// false the last chunk starts with another byte: the old encoder's group of printfs then exits
// 0 although it dropped every other chunk (the silent loss).
func dashAtBoundaries(lastChunk bool) []byte {
	var b []byte
	for i := 0; i < 8; i++ {
		b = append(b, '-')
		b = append(b, bytes.Repeat([]byte("x"), 254)...)
		b = append(b, '\n')
	}
	if lastChunk {
		return append(b, "--- last line, no newline"...)
	}
	return append(b, "last line, no newline"...)
}

// oldWritePrintf is the encoder before issue 8: '-' was "safe", so a chunk could start with it.
func oldWritePrintf(b *strings.Builder, data []byte) {
	if len(data) == 0 {
		b.WriteString("printf ''\n")
		return
	}
	for len(data) > 0 {
		n := min(256, len(data))
		b.WriteString("printf '")
		for _, c := range data[:n] {
			if isSafe(c) || c == '-' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(b, `\%03o`, c)
			}
		}
		b.WriteString("'\n")
		data = data[n:]
	}
}

// shells are the POSIX shells a host may run the scripts with.
func shells(t *testing.T) []string {
	var found []string
	for _, s := range []string{"dash", "bash", "busybox"} {
		if p, err := exec.LookPath(s); err == nil {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		t.Fatal("no dash or bash")
	}
	return found
}

// runShell runs script with shell, HOME=home, the way conn.run does (with confirm: the script's
// change is confirmed once it is ready), and returns stdout and the exit status (-1: killed).
func runShell(t *testing.T, shell, home, script string, confirm bool) (string, int) {
	t.Helper()
	return runShellFed(t, shell, home, func(in io.WriteCloser, ready <-chan struct{}) {
		feed(context.Background(), in, script, ready, nil)
	}, confirm)
}

// runShellFed is runShell with the caller writing stdin.
func runShellFed(t *testing.T, shell, home string, fd func(in io.WriteCloser, ready <-chan struct{}), confirm bool) (string, int) {
	t.Helper()
	args := []string{}
	if filepath.Base(shell) == "busybox" {
		args = append(args, "sh")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, args...)
	cmd.Env = []string{"HOME=" + home, "PATH=/usr/bin:/bin"}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := newScriptOutput(confirm)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go fd(in, out.ready)
	err = cmd.Wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg := strings.TrimSpace(stderr.String())
		t.Logf("%s: exit %d: %s", filepath.Base(shell), ee.ExitCode(), msg[strings.LastIndexByte(msg, '\n')+1:])
		return string(out.Bytes()), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out.Bytes()), 0
}

// TestSSHOldEncoderLosesDashChunks reproduces the bug of issue 8 with the old encoder: the shells
// drop a printf whose argument starts with '-' and the group still succeeds. The same file with
// the current encoder comes out exactly.
func TestSSHOldEncoderLosesDashChunks(t *testing.T) {
	data := dashAtBoundaries(false)
	for _, sh := range shells(t) {
		for name, enc := range map[string]func(*strings.Builder, []byte){"old": oldWritePrintf, "new": writePrintf} {
			var b strings.Builder
			b.WriteString("{\n")
			enc(&b, data)
			b.WriteString("} 2>/dev/null\n")
			out, code := runShell(t, sh, t.TempDir(), b.String(), false)
			switch {
			case code != 0:
				t.Fatalf("%s, %s encoder: exit %d", sh, name, code)
			case name == "old" && out == string(data):
				t.Fatalf("%s: the old encoder printed the file exactly; the regression case no longer shows the bug", sh)
			case name == "new" && out != string(data):
				t.Fatalf("%s: %d bytes printed, want %d", sh, len(out), len(data))
			}
		}
	}
}

// TestSSHWritePrintfNoOptionArgument: whatever byte comes first in a chunk, no printf argument
// starts with '-' (or holds a quote that would end it).
func TestSSHWritePrintfNoOptionArgument(t *testing.T) {
	for c := 0; c < 256; c++ {
		data := append(bytes.Repeat([]byte{byte(c)}, 600), '-', byte(c))
		var b strings.Builder
		writePrintf(&b, data)
		for _, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
			arg, ok := strings.CutPrefix(l, "printf '")
			if !ok || !strings.HasSuffix(arg, "'") || strings.Count(arg, "'") != 1 {
				t.Fatalf("byte %#x: line %q", c, l)
			}
			if strings.HasPrefix(arg, "-") || strings.Contains(arg, "%") {
				t.Fatalf("byte %#x: argument %q", c, arg)
			}
		}
	}
}

// TestSSHWriteScriptCksumCheck: a write script whose printf loses bytes (the old encoder on the
// regression file) fails with exitMismatch before the rename, on every shell, and the file keeps
// its bytes; the current encoder writes the file exactly.
func TestSSHWriteScriptCksumCheck(t *testing.T) {
	data := dashAtBoundaries(false)
	oldWriter := scriptWriter{encode: oldWritePrintf, bound: scriptBound}
	orig := []byte("ssh-ed25519 AAAA original\n")
	for _, sh := range shells(t) {
		home := t.TempDir()
		f := filepath.Join(home, ".ssh", "authorized_keys")
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		// The expected copy holds the regression file: the old encoder loses bytes there too.
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, code := runShell(t, sh, home, oldWriter.script(data, true, orig, true), true); code != exitMismatch {
			t.Fatalf("%s: old encoder, lossy expected copy: exit %d, want %d", sh, code, exitMismatch)
		}
		if err := os.WriteFile(f, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, code := runShell(t, sh, home, oldWriter.script(orig, true, data, true), true); code != exitMismatch {
			t.Fatalf("%s: old encoder, lossy new content: exit %d, want %d", sh, code, exitMismatch)
		}
		if got, _ := os.ReadFile(f); !bytes.Equal(got, orig) {
			t.Fatalf("%s: a write that failed its check changed the file: %q", sh, got)
		}
		if _, code := runShell(t, sh, home, writeScript(orig, true, data, true), true); code != 0 {
			t.Fatalf("%s: exit %d", sh, code)
		}
		if got, _ := os.ReadFile(f); !bytes.Equal(got, data) {
			t.Fatalf("%s: written %d bytes, want %d", sh, len(got), len(data))
		}
		if entries, _ := os.ReadDir(filepath.Dir(f)); len(entries) != 1 {
			t.Fatalf("%s: temporary files left: %v", sh, entries)
		}
	}
}

// TestSSHWriteScriptNeedsConfirmation: the write script changes nothing unless the client
// confirms: stdin closed without the confirmation, or another word, ends it with
// exitUnconfirmed, the file untouched and no temporary file left; the removal waits too.
func TestSSHWriteScriptNeedsConfirmation(t *testing.T) {
	orig := []byte("ssh-ed25519 AAAA original\n")
	for _, sh := range shells(t) {
		home := t.TempDir()
		f := filepath.Join(home, ".ssh", "authorized_keys")
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		for name, script := range map[string]string{
			"replace": writeScript(orig, true, []byte("new\n"), true),
			"remove":  writeScript(orig, true, nil, false),
		} {
			for answer, fd := range map[string]func(io.WriteCloser, <-chan struct{}){
				"stdin closed": func(in io.WriteCloser, _ <-chan struct{}) {
					_, _ = io.WriteString(in, script)
					in.Close()
				},
				"another word": func(in io.WriteCloser, ready <-chan struct{}) {
					_, _ = io.WriteString(in, script)
					<-ready
					_, _ = io.WriteString(in, "yes\n")
					in.Close()
				},
			} {
				out, code := runShellFed(t, sh, home, fd, true)
				if code != exitUnconfirmed || out != readyLine {
					t.Fatalf("%s, %s, %s: exit %d, stdout %q", sh, name, answer, code, out)
				}
				if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got, orig) {
					t.Fatalf("%s, %s, %s: file %q, %v", sh, name, answer, got, err)
				}
				if entries, _ := os.ReadDir(filepath.Dir(f)); len(entries) != 1 {
					t.Fatalf("%s: temporary files left: %v", sh, entries)
				}
			}
		}
	}
}

// TestSSHWriteScriptWatchdog: a write script whose client neither confirms nor goes away is
// killed by its own watchdog (here after 1 s) before its change, and the file keeps its bytes.
// The production bound is below SettleTime.
func TestSSHWriteScriptWatchdog(t *testing.T) {
	orig := []byte("ssh-ed25519 AAAA original\n")
	short := scriptWriter{encode: writePrintf, bound: time.Second}
	for _, sh := range shells(t) {
		home := t.TempDir()
		f := filepath.Join(home, ".ssh", "authorized_keys")
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		script := short.script(orig, true, []byte("new\n"), true)
		// stdin stays open: exec closes it once the shell is gone.
		out, code := runShellFed(t, sh, home, func(in io.WriteCloser, _ <-chan struct{}) { _, _ = io.WriteString(in, script) }, true)
		if code != -1 || out != readyLine {
			t.Fatalf("%s: exit %d (want killed), stdout %q", sh, code, out)
		}
		if got, _ := os.ReadFile(f); !bytes.Equal(got, orig) {
			t.Fatalf("%s: file %q", sh, got)
		}
	}
	want := fmt.Sprintf(`while [ "$n" -lt %d ]`, int(scriptBound/time.Second))
	if !strings.Contains(writeScript(nil, false, nil, true), want) {
		t.Fatalf("the write script has no watchdog of %s", scriptBound)
	}
	if (&target{}).SettleTime() <= scriptBound {
		t.Fatalf("SettleTime %s does not cover the script's bound %s", (&target{}).SettleTime(), scriptBound)
	}
}
