//go:build !linux

package testenv

import "testing"

// StartDockerd is Linux only.
func StartDockerd(t testing.TB) *DockerEngine {
	t.Helper()
	t.Fatal("testenv: StartDockerd runs on Linux only")
	return nil
}
