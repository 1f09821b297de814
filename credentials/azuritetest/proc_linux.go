package azuritetest

import "syscall"

// setDeathSignal makes the kernel kill Azurite if the test binary dies
// without calling Stop (a timeout panic, a kill).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
