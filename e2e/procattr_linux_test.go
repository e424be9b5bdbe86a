package e2e

import "syscall"

// sysProcAttr makes the kernel kill a child when the test binary dies
// without its cleanup (a go test timeout), and gives it a process group of
// its own so that a terminal's Ctrl-C reaches only the test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
