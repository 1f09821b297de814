package launch

import "syscall"

// sysProcAttr has the kernel kill Envoy if the program that started it dies
// first (a test's timeout panic, a SIGKILL), so that no Envoy outlives it.
// Envoy also gets a process group of its own, so that the terminal's ^C
// reaches only that program, which then stops Envoy with Close: Envoy does
// not exit under it on its own.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
