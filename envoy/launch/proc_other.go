//go:build !linux

package launch

import "syscall"

// sysProcAttr: only Linux can tie Envoy's life to the life of the program
// that started it; elsewhere only Close stops Envoy.
func sysProcAttr() *syscall.SysProcAttr { return nil }
