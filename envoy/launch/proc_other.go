//go:build !linux

package envoytest

import "syscall"

// sysProcAttr: only Linux can tie Envoy's life to the test binary's; t.Cleanup
// still kills it.
func sysProcAttr() *syscall.SysProcAttr { return nil }
