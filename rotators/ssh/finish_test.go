package ssh

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/testenv"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

func inode(t *testing.T, h *testenv.SSHHost) uint64 {
	t.Helper()
	st, err := os.Stat(h.AuthorizedKeysPath)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestSSHFinishOnRealHosts: Finish leaves exactly the new key of ours on both hosts, with every
// foreign line byte for byte (another role's line of ours included), from the states an
// interrupted Apply leaves: both keys on both hosts, and the old key already removed on host 1
// only. A second Finish writes nothing. A host that refuses the new key is a rejection naming it.
func TestSSHFinishOnRealHosts(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := newApplySetup(t, nil)
	oldPub, newPub := mustKey(t, s.old), mustKey(t, s.new)
	otherRole := keyLine("", newKey(t), newKey(t)) // ours, but it replaced another key
	stray := keyLine("", newKey(t), oldPub)        // ours, replaced old, never promoted
	newLine := keyLine(`no-pty`, newPub, oldPub)   // what step 1 added
	foreign := strings.Join(s.foreignLines, "")    // CRLF, options, blank line
	after := []string{                             // exactly what must be left
		foreign + otherRole + "\n# tail, no newline\n" + newLine,
		newLine + "\r\n" + foreign,
	}
	bothKeys := []string{ // after step 2 on both hosts
		foreign + `no-pty ` + s.oldLine + "\n" + stray + "\n" + otherRole + "\n# tail, no newline\n" + newLine,
		s.oldLine + "\r\n" + newLine + "\r\n" + foreign,
	}
	check := func(t *testing.T) {
		t.Helper()
		for i, h := range s.hosts {
			if got := h.ReadAuthorizedKeys(t); string(got) != after[i] {
				t.Fatalf("host %d:\n%q\nwant\n%q", i+1, got, after[i])
			}
		}
		s.checkLogins(t, false, true)
	}

	t.Run("both keys on both hosts", func(t *testing.T) {
		for i, h := range s.hosts {
			h.WriteAuthorizedKeys(t, []byte(bothKeys[i]))
		}
		if err := s.tg.Finish(ctx, rotators.Env{}, s.old, s.new); err != nil {
			t.Fatal(err)
		}
		check(t)
		ino := []uint64{inode(t, s.hosts[0]), inode(t, s.hosts[1])}
		if err := s.tg.Finish(ctx, rotators.Env{}, s.old, s.new); err != nil {
			t.Fatalf("second Finish: %v", err)
		}
		check(t)
		if inode(t, s.hosts[0]) != ino[0] || inode(t, s.hosts[1]) != ino[1] {
			t.Fatal("a second Finish rewrote authorized_keys")
		}
	})

	t.Run("old key removed on host 1 only", func(t *testing.T) {
		s.hosts[0].WriteAuthorizedKeys(t, []byte(after[0]))
		s.hosts[1].WriteAuthorizedKeys(t, []byte(bothKeys[1]))
		ino1 := inode(t, s.hosts[0])
		if err := s.tg.Finish(ctx, rotators.Env{}, s.old, s.new); err != nil {
			t.Fatal(err)
		}
		check(t)
		if inode(t, s.hosts[0]) != ino1 {
			t.Fatal("host 1, already finished, was rewritten")
		}
	})

	t.Run("host 2 refuses the new key", func(t *testing.T) {
		s.hosts[0].WriteAuthorizedKeys(t, []byte(bothKeys[0]))
		s.hosts[1].WriteAuthorizedKeys(t, []byte(s.oldLine+"\n"))
		err := s.tg.Finish(ctx, rotators.Env{}, s.old, s.new)
		t.Log(err)
		if !errors.Is(err, rotators.ErrRejected) || !strings.Contains(err.Error(), "host "+s.hosts[1].Addr+": log in with the new key") ||
			strings.Contains(err.Error(), s.hosts[0].Addr) {
			t.Fatalf("got %v", err)
		}
		// Host 1 was finished all the same; host 2 keeps the only key that logs in there.
		if got := s.hosts[0].ReadAuthorizedKeys(t); string(got) != after[0] {
			t.Fatalf("host 1:\n%q", got)
		}
		if got := s.hosts[1].ReadAuthorizedKeys(t); !bytes.Equal(got, []byte(s.oldLine+"\n")) {
			t.Fatalf("host 2:\n%q", got)
		}
	})
}
