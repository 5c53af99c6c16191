package version

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestVersion: the file's version by default, and a release build's stamp (scripts/release.sh)
// when it has one.
func TestVersion(t *testing.T) {
	if want := strings.TrimSpace(file); Version != want || !strings.HasPrefix(Version, "v") {
		t.Fatalf("Version = %q, want the VERSION file's %q", Version, want)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goBin, "run", "-ldflags", "-X github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version.stamped=v9.8.7-rc.1", "./testdata/printversion")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go run: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "v9.8.7-rc.1" {
		t.Fatalf("a stamped build reports %q", got)
	}
}
