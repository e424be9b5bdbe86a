package serverproc

import "syscall"

// sysProcAttr makes the kernel kill a child server when its parent dies
// without running its cleanup (a go test timeout, a crash, a killed bench),
// so no server outlives the process that started it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
