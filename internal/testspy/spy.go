// Package testspy holds FAKE listeners for tests that must show a service was never asked. It registers nothing
// (unlike internal/testkit), so the integration tests, whose plugin knows only the real kinds, may use it.
package testspy

import (
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// UnixSpy listens on a Unix socket that counts the connections it accepts and closes each at
// once: a FAKE Docker engine for tests that must show the engine was never asked. host is its
// unix:// address.
func UnixSpy(t testing.TB) (host string, accepted *atomic.Int32) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted = &atomic.Int32{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	return "unix://" + sock, accepted
}
