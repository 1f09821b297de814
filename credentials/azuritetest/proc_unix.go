//go:build unix

package azuritetest

import (
	"os/exec"
	"syscall"
	"time"
)

// setProcAttr puts Azurite (node and anything it starts) in its own
// process group, so that Stop ends all of it.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setDeathSignal(cmd.SysProcAttr)
}

// stopProcess sends SIGTERM to the group, then SIGKILL after 10s.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
}
