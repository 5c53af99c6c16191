//go:build failpoints

package failpoint

import (
	"os"
	"strings"
	"time"
)

// Enabled is true in builds with -tags failpoints.
const Enabled = true

// Inject pauses at a named point, so that a crash test can kill Vault inside a window it knows.
// ROTATION_FAILPOINT is "name=duration", e.g. "after-apply=30s". With ROTATION_FAILPOINT_MARKER
// set, the point pauses once: it writes the marker file, and does nothing once the file exists
// (after a restart).
func Inject(name string) {
	spec := os.Getenv("ROTATION_FAILPOINT")
	point, dur, ok := strings.Cut(spec, "=")
	if !ok || point != name {
		return
	}
	d, err := time.ParseDuration(dur)
	if err != nil {
		return
	}
	if marker := os.Getenv("ROTATION_FAILPOINT_MARKER"); marker != "" {
		if _, err := os.Stat(marker); err == nil {
			return
		}
		_ = os.WriteFile(marker, []byte(name), 0o600)
	}
	time.Sleep(d)
}
