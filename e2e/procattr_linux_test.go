package e2e

import "syscall"

// sysProcAttr makes the kernel kill a child when the test binary dies
// without its cleanup (a go test timeout), and gives it a process group of
// its own so that a terminal's Ctrl-C reaches only the test binary.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// freeze stops the process where it stands (SIGSTOP), as a frozen pod or
// a long GC pause does; thaw lets it run on (SIGCONT).
func (p *proc) freeze() error { return syscall.Kill(p.Pid(), syscall.SIGSTOP) }
func (p *proc) thaw() error   { return syscall.Kill(p.Pid(), syscall.SIGCONT) }
