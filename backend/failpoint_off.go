//go:build !failpoints

package backend

// failpoint is a no-op in release builds; see failpoint_on.go.
func failpoint(string) {}
