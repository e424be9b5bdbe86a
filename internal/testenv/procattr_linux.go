package testenv

import "syscall"

// sysProcAttr makes the kernel kill a child server when the test binary dies
// without running its cleanup (a go test timeout, a crash), so no MinIO
// outlives the tests that started it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// processAlive reports whether a process with this pid exists.
func processAlive(pid int) bool {
	return syscall.Kill(pid, 0) != syscall.ESRCH
}
