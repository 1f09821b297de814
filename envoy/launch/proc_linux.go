package envoytest

import "syscall"

// sysProcAttr has the kernel kill Envoy if the test binary dies first (a
// timeout panic, a SIGKILL), so that no Envoy outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
