//go:build linux

package testenv

import (
	"os/exec"
	"syscall"
)

// setProcAttrs puts the server in its own process group (so Kill reaches its plugin processes) and has the kernel kill
// it if the test binary dies without running cleanups (e.g. on a test timeout panic).
func setProcAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
