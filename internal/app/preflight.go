package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/retry"
)

// checkTimeout bounds one try of one start check: a dependency that does
// not answer fails the check, which is tried again.
const checkTimeout = 30 * time.Second

// Gate holds a long-running process back until its start checks pass: it
// is the first of the process's readiness checks, and the process pulls
// no work before Pass returns.
type Gate struct {
	mu  sync.Mutex
	err error // nil once every check has passed
}

// NewGate is a gate that is not yet passed (state starting).
func NewGate() *Gate {
	return &Gate{err: &NotReady{State: StateStarting, Err: errors.New("the start checks have not all run yet")}}
}

// Ready is nil once every start check has passed, else the first failing
// check's NotReady.
func (g *Gate) Ready() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *Gate) set(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.err = err
}

// StartCheck is one check a process passes before it works.
type StartCheck struct {
	State State                           // the readiness state while it fails
	Name  string                          // what is checked, for the log
	Max   time.Duration                   // the longest wait between tries
	Run   func(ctx context.Context) error // one try, bounded by checkTimeout
}

// Pass runs checks until every one has passed, or ctx ends (its error is
// returned). A check that fails is tried again after a back-off (from
// base, doubling, capped at its Max, with jitter so that pods started
// together spread out); one that passed is not run again — from then on
// the process's own fault handling (the fleet pause, I6) takes over. A
// check that fails with ErrConfig ends Pass with that error.
// Every check runs in each round, so the log names every broken dependency
// at once: one line per failure, again only when its cause changes. The
// gate's state is the first failing check's, in the order given.
func (g *Gate) Pass(ctx context.Context, log *slog.Logger, base time.Duration, checks ...StartCheck) error {
	type status struct {
		fails  int
		passed bool
		next   time.Time
		last   string // the last failure's text, logged once
		err    error
	}
	sts := make([]status, len(checks))
	for {
		for i, c := range checks {
			st := &sts[i]
			if st.passed || time.Now().Before(st.next) {
				continue
			}
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			err := c.Run(cctx)
			cancel()
			if ctx.Err() != nil {
				return fmt.Errorf("stopped before the start checks passed: %w", ctx.Err())
			}
			if errors.Is(err, ErrConfig) {
				// No wait fixes a configuration error: exit 2.
				return err
			}
			if refusedByNATS(err) {
				// The pod holds credentials its role does not have (its
				// Secret, or the server's users): exit 3, as the planner
				// does, so the pod's status shows it rather than a quiet
				// "not ready" (#17: each role refused outside its rights
				// exits 3).
				return err
			}
			if err == nil {
				st.passed, st.err = true, nil
				if st.fails > 0 {
					log.Info("start check passed: "+c.Name, "check", string(c.State), "tries", st.fails+1)
				}
				continue
			}
			st.fails++
			st.err = err
			wait := retry.Backoff(st.fails, base, c.Max)
			st.next = time.Now().Add(wait)
			if text := err.Error(); text != st.last {
				st.last = text
				log.Error("start check failed: "+c.Name+"; not ready and pulling no work, checking again with back-off",
					"check", string(c.State), "err", err, "next_check", wait.Round(time.Millisecond), "max_wait", c.Max)
			} else {
				log.Debug("start check failed again: "+c.Name, "check", string(c.State), "err", err, "next_check", wait.Round(time.Millisecond))
			}
		}
		var first error
		next := time.Time{}
		for i, st := range sts {
			if st.passed {
				continue
			}
			if first == nil {
				state := checks[i].State
				if st.err == nil {
					state = StateStarting
				}
				first = &NotReady{State: state, Err: st.err}
			}
			if next.IsZero() || st.next.Before(next) {
				next = st.next
			}
		}
		if first == nil {
			g.set(nil)
			return nil
		}
		g.set(first)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("stopped before the start checks passed: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// StartParts builds a long-running process's parts once its start checks
// pass (#18.2): NATS and JetStream (connected, the streams, buckets and
// consumer set up as for Build), the bucket (exists; a probe object
// written and deleted, see ops.CheckBucket), the Qualys login (see
// ops.CheckLogin: /msp/about.php, which takes no detection slot). Until
// then gate answers with the first failing check's state and the caller
// pulls nothing.
//
// It waits rather than exits: a pod that exits is restarted by its
// Deployment with a back-off that grows to five minutes (CrashLoopBackOff),
// so a fixed bucket or password would wait out that back-off, and the
// restarts bury the one log line that says what is wrong. A waiting pod
// stays up, not ready, says why on /readyz and in its log, and starts
// working within one back-off (at most every) of the fix. Configuration
// errors still exit (2): no wait fixes them.
//
// every caps the waits between tries (QFETCH_WORKER_PROBE_EVERY for a
// worker); the login's cap is four times that, as about.php's own budget
// (300 calls an hour on a standard subscription) is shared by every pod.
func StartParts(ctx context.Context, name string, role Role, s Sections, log *slog.Logger, gate *Gate, every time.Duration) (*Parts, error) {
	client, store, err := clients(s, role)
	if err != nil {
		return nil, err
	}
	var (
		nc *nats.Conn
		js jetstream.JetStream
		q  JetStream
	)
	warned := false
	checks := []StartCheck{
		{State: StateNATS, Name: "NATS and JetStream", Max: every, Run: func(ctx context.Context) error {
			if nc == nil {
				c, j, err := Connect(s.NATS, name, log)
				if err != nil {
					return err
				}
				nc, js = c, j
			}
			var err error
			q, err = Queue(ctx, js, s.NATS, s.Fleet, s.AckWait, role)
			return err
		}},
		{State: StateStore, Name: "the bucket", Max: every, Run: func(ctx context.Context) error {
			return ops.CheckBucket(ctx, store, s.S3.Prefix)
		}},
		{State: StateQualys, Name: "the Qualys login", Max: 4 * every, Run: func(ctx context.Context) error {
			err := ops.CheckLogin(ctx, client)
			if errors.Is(err, ops.ErrLoginUnverified) {
				if !warned {
					warned = true
					log.Warn("the Qualys login could not be verified; going on, and the first detection calls decide", "err", err)
				}
				return nil
			}
			return err
		}},
	}
	if err := gate.Pass(ctx, log, min(time.Second, every), checks...); err != nil {
		if nc != nil {
			nc.Close()
		}
		return nil, err
	}
	return &Parts{Log: log, Qualys: client, Store: store, Queue: q, Prefix: s.S3.Prefix, Owner: Owner(), NATS: nc}, nil
}

// Preflight checks what a planner needs before it opens or resumes a run:
// the bucket (exists, writable) and the Qualys login, so that a wrong
// password or a missing bucket leaves no failed run behind. It logs one
// line per failure and returns them joined, with their classes (a
// fleet-wide fault exits 3). NATS was checked by Build.
func (p Parts) Preflight(ctx context.Context) error {
	var errs []error
	check := func(what string, f func(context.Context) error) {
		err := retried(ctx, f)
		if errors.Is(err, ops.ErrLoginUnverified) {
			p.Log.Warn("the Qualys login could not be verified; planning, and the Host List calls decide", "err", err)
			return
		}
		if err != nil {
			p.Log.Error("preflight check failed: "+what+"; no run opened", "err", err)
			errs = append(errs, fmt.Errorf("preflight: %s: %w", what, err))
		}
	}
	check("the bucket", func(ctx context.Context) error { return ops.CheckBucket(ctx, p.Store, p.Prefix) })
	check("the Qualys login", func(ctx context.Context) error { return ops.CheckLogin(ctx, p.Qualys) })
	err := errors.Join(errs...)
	if slices.ContainsFunc(errs, func(err error) bool { return failure.ClassOf(err) == failure.ClassFleetWide }) {
		// One fleet-wide fault decides the exit code (3) whatever the
		// other check met.
		return failure.FleetWide(err)
	}
	return err
}

// refusedByNATS reports whether NATS refused this process's credentials or
// one of its role's operations.
func refusedByNATS(err error) bool {
	var re *natsperm.RefusedError
	return errors.As(err, &re) || errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked)
}

// preflightTries is how often the planner tries a check that meets a
// retryable failure (a 5xx, a reset, a timeout): the Host List calls that
// follow ride out such a blip, so the preflight must too, rather than
// fail the run it guards.
const preflightTries = 5

// retried runs f, each try bounded by checkTimeout, until it passes, fails
// with anything but a retryable error, or has been tried preflightTries
// times, with the back-off between tries.
func retried(ctx context.Context, f func(context.Context) error) error {
	for n := 1; ; n++ {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		err := f(cctx)
		cancel()
		if err == nil || n == preflightTries || ctx.Err() != nil || failure.ClassOf(err) != failure.ClassRetryable {
			return err
		}
		t := time.NewTimer(retry.Backoff(n, time.Second, 30*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
