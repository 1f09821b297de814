package azuritetest

import "os/exec"

func setProcAttr(*exec.Cmd) {}

// stopProcess kills Azurite; on Windows its children are not in a group.
func stopProcess(cmd *exec.Cmd, done <-chan struct{}) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}
