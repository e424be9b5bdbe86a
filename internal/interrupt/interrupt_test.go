//go:build unix

package interrupt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/interrupt"
)

// The tests run their scenarios in a child process (this binary, again)
// started the way the lost SIGINT was met: as a background job of a
// non-interactive shell, which starts it with SIGINT ignored.

const childEnv = "QFETCH_INTERRUPT_SCENARIO"

func TestMain(m *testing.M) {
	if s := os.Getenv(childEnv); s != "" {
		if err := scenarios[s](); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("PASS")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var scenarios = map[string]func() error{
	// What main did: a handler installed after the packages' init. A
	// SIGINT sent before it (while the inherited "ignore" holds) is dropped
	// by the kernel; a later SIGUSR1 is the first signal the handler sees.
	"late-handler": func() error {
		signal.Ignore(os.Interrupt) // as the process started: no init caught it
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			return err
		}
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, os.Interrupt, syscall.SIGUSR1)
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
			return err
		}
		// Standard signals are dispatched lowest number first: a SIGINT
		// still pending would arrive before SIGUSR1.
		if s := <-ch; s != syscall.SIGUSR1 {
			return fmt.Errorf("got %v first: the early SIGINT was not lost", s)
		}
		return nil
	},
	// The fix: the handler is this package's init; a SIGINT sent before
	// main asks for its context (during the other packages' init) cancels it.
	"early-handler": func() error {
		if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
			return err
		}
		ctx, stop := interrupt.Context(context.Background())
		defer stop()
		return canceledBy(ctx, "interrupt signal received")
	},
	// A signal after Context cancels it as NotifyContext would.
	"after-context": func() error {
		ctx, stop := interrupt.Context(context.Background())
		defer stop()
		if ctx.Err() != nil {
			return fmt.Errorf("canceled before any signal: %v", context.Cause(ctx))
		}
		if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
			return err
		}
		return canceledBy(ctx, "terminated signal received")
	},
}

func canceledBy(ctx context.Context, want string) error {
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		return errors.New("not canceled 10s after the signal")
	}
	cause := context.Cause(ctx)
	if cause.Error() != want || !errors.Is(cause, context.Canceled) {
		return fmt.Errorf("cause %q (is context.Canceled: %v), want %q", cause, errors.Is(cause, context.Canceled), want)
	}
	return nil
}

// runChild runs scenario as a background job of sh, the way `qfetch local &`
// is started from a script.
func runChild(t *testing.T, scenario string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to start a background job with")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), sh, "-c", `"$0" "$@" & wait $!`, exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+scenario)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("scenario %s: %v\n%s", scenario, err, out)
	}
}

// TestLateHandlerLosesSIGINT shows the cause of #18.9: with the handler
// installed after init, a SIGINT sent to a background `qfetch local` in
// its first instants was dropped and the run went on to the end.
func TestLateHandlerLosesSIGINT(t *testing.T) { runChild(t, "late-handler") }

// TestEarlySIGINTStops: the same SIGINT, sent after this package's init
// but before main's Context, stops the process.
func TestEarlySIGINTStops(t *testing.T) { runChild(t, "early-handler") }

func TestSignalAfterContext(t *testing.T) { runChild(t, "after-context") }
