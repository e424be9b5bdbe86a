//go:build !linux

package e2e

import (
	"errors"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr { return nil }

// freeze and thaw need SIGSTOP and SIGCONT, sent the Linux way; the
// scenario that freezes a worker is skipped elsewhere.
func (p *proc) freeze() error { return errors.ErrUnsupported }
func (p *proc) thaw() error   { return errors.ErrUnsupported }
