//go:build failpoints

package backend

import (
	"os"
	"strings"
	"time"
)

// failpoint pauses at a named point of the protocol, so that a crash test can kill Vault inside
// a window it knows. Only test builds (-tags failpoints) have it. ROTATION_FAILPOINT is
// "name=duration", e.g. "after-apply=30s".
func failpoint(name string) {
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
		_ = os.WriteFile(marker, []byte(name), 0o600)
	}
	time.Sleep(d)
}
