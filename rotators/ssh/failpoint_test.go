//go:build failpoints

package ssh

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vault-plugin-rotation/vault-plugin-rotation/internal/failpoint"
	"github.com/vault-plugin-rotation/vault-plugin-rotation/rotators"
)

// TestSSHFailpointsReached: with -tags failpoints, each of the ssh kind's failpoints is reached by
// a successful Apply (the marker file names it). Where each one sits is for the crash tests.
func TestSSHFailpointsReached(t *testing.T) {
	ctx := testContext(t)
	s := newApplySetup(t, nil)
	from, to := s.old, s.new
	for _, name := range []string{failpoint.SSHAfterAddFirstHost, failpoint.SSHAfterAddAllHosts, failpoint.SSHAfterRemoveFirstHost} {
		marker := filepath.Join(t.TempDir(), "marker")
		t.Setenv("ROTATION_FAILPOINT", name+"=0s")
		t.Setenv("ROTATION_FAILPOINT_MARKER", marker)
		if err := s.tg.Apply(ctx, rotators.Env{}, from, to); err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(marker); err != nil || string(b) != name {
			t.Fatalf("%s not reached: %q, %v", name, b, err)
		}
		from, to = to, from
	}
}
