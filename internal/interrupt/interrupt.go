// Package interrupt owns the stop signals (SIGINT, SIGTERM) of qfetch's
// binaries from the first instant of the process, not from main's first line.
//
// A process started with SIGINT ignored — every background job of a
// non-interactive shell (`qfetch local & … kill -INT $!`), nohup — keeps it
// ignored until a handler is installed; the kernel drops a SIGINT sent
// before then. signal.NotifyContext in main installs it only after every
// package's init (nats-server, minio-go, prometheus …: 100–300 ms on a busy
// machine), so a SIGINT in that window was lost and the run went on to the
// end. This package installs the handler in its own init, which depends on
// os/signal alone and so runs among the first, and Context delivers what
// was caught before main asked.
package interrupt

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Signals are the signals that stop a qfetch process.
var Signals = []os.Signal{os.Interrupt, syscall.SIGTERM}

// early holds the first stop signal caught before Context was called.
var early = make(chan os.Signal, 1)

func init() {
	signal.Notify(early, Signals...)
}

// Context is signal.NotifyContext(parent, Signals...), except that a stop
// signal received since the process started, before Context was called,
// cancels it too. Its cause reads "interrupt signal received" (or
// "terminated …") and is context.Canceled, as NotifyContext's is. stop
// releases the signals: another one then has its default effect.
func Context(parent context.Context) (ctx context.Context, stop context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	// ch is registered before early is released, so that the handler is
	// never uninstalled in between.
	signal.Notify(ch, Signals...)
	signal.Stop(early)
	go func() {
		select {
		case s := <-early:
			cancel(signalError(s.String() + " signal received"))
		case s := <-ch:
			cancel(signalError(s.String() + " signal received"))
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		cancel(context.Canceled)
	}
}

// signalError is a cancellation cause naming the signal; it is
// context.Canceled for errors.Is (exit code 130).
type signalError string

func (s signalError) Error() string { return string(s) }

func (s signalError) Is(target error) bool { return target == context.Canceled }
