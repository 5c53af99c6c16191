// Package version holds the plugin's version: the one place it is written is the file VERSION
// next to this one. `make release` stamps a release's version from its git tag instead, with
// -ldflags "-X github.com/vault-plugin-rotation/vault-plugin-rotation/internal/version.stamped=vX.Y.Z".
package version

import (
	_ "embed"
	"strings"
)

//go:embed VERSION
var file string

// stamped is set at link time by a release build; empty otherwise.
var stamped string

// Version is the version the plugin reports to Vault (RunningVersion), which must equal the
// -version it is registered with.
var Version = func() string {
	if stamped != "" {
		return stamped
	}
	return strings.TrimSpace(file)
}()
