//go:build !failpoints

// Package failpoint names the points of the rotation protocol where a crash test pauses the
// plugin to kill Vault inside a known window. Only test builds (-tags failpoints) pause; in the
// release binary Inject is an empty function the compiler removes.
package failpoint

// Enabled is true in builds with -tags failpoints.
const Enabled = false

// Inject does nothing in release builds; see on.go.
func Inject(string) {}
