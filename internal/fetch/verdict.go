package fetch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/retry"
)

// attempt is what the verdict knows of one try at a batch. Its fields are
// plain values, whoever supplies them: the streak could as well come from a
// store shared by the fleet.
type attempt struct {
	Stored   bool          // stored, recorded and acked
	Class    failure.Class // the failure's class
	Stopping bool          // cut short by this worker's own stop
	TooBig   bool          // a stall or a size refusal: the batch is too big for one call
	Wait     time.Duration // how long back-pressure asked us to wait
	CanSplit bool          // the batch holds more than one host
	// Streak is the failures since the last success, this one included
	// when it counts (see counted).
	Streak streakState
	// Failures is how often this batch was charged, this time included
	// when it is charged (see charged); 0 when counting failed.
	Failures int
}

// streakState is a streak of retryable failures with no success between.
type streakState struct {
	Failures int
	Spread   bool // over more than one batch
}

// rules are the worker's limits the verdict applies.
type rules struct {
	MaxFailures int           // charged failures before a batch is dead-lettered
	SplitAfter  int           // charged failures of an oversized batch before it is split
	BreakAfter  int           // streak failures, over several batches, that make an outage
	ProbeEvery  time.Duration // how long a paused batch waits
	MaxBackoff  time.Duration
}

// retryBase is the first retry's delay: Qualys' own scripts wait 30 + 2^n s;
// a 5xx there is rarely gone in a second, and each early retry spends a call.
const retryBase = 30 * time.Second

// kind is what happens to a batch after an attempt.
type kind uint8

const (
	ack        kind = iota // stored: reset the streak, try to finish the run
	handBack               // Nak at once, uncharged: this worker is stopping
	retryLater             // Nak after Delay: charged, not yet spent
	delay                  // back-pressure: hold this worker's pulls and Nak for Delay
	pause                  // hold this worker until a probe passes; Nak after Delay
	split                  // publish two halves and Term; if that fails, retryLater
	deadLetter             // Term with Reason and leave a dead-letter record
)

var kindNames = [...]string{"ack", "hand back", "retry", "delay", "pause", "split", "dead-letter"}

func (k kind) String() string { return kindNames[k] }

// verdict is the decision about one attempt.
type verdict struct {
	Kind    kind
	Delay   time.Duration // before redelivery; for split, the retry's if it cannot be made
	Reason  string        // why a pause or dead letter
	Attempt int           // the batch's charged failures, for the retry's log
}

// counted reports whether a failure joins the outage streak: a retryable
// one that says nothing about the batch's size. A stall or a size refusal
// says the batch is too big, whatever else fails.
func counted(a attempt) bool {
	return !a.Stored && !a.Stopping && retryable(a.Class) && !a.TooBig
}

// charged reports whether a failure counts against the batch (design.md
// I6): back-pressure, fleet-wide faults, an outage and our own stop never
// do.
func charged(a attempt, r rules) bool {
	return !a.Stored && !a.Stopping && retryable(a.Class) && !outage(a, r)
}

// outage reports failures spread over batches with no success between: the
// fault is not this batch's, and pausing keeps it from using up every
// batch's chances.
func outage(a attempt, r rules) bool {
	return !a.TooBig && a.Streak.Spread && a.Streak.Failures >= r.BreakAfter
}

// retryable is every class the worker retries: anything nobody classified
// too.
func retryable(c failure.Class) bool {
	switch c {
	case failure.ClassBackPressure, failure.ClassFleetWide, failure.ClassPermanent:
		return false
	}
	return true
}

// decide is the verdict on an attempt. Its delays carry jitter, the one
// randomness in it.
func decide(a attempt, r rules) verdict {
	switch {
	case a.Stored:
		return verdict{Kind: ack}
	case a.Stopping:
		return verdict{Kind: handBack}
	}
	switch a.Class {
	case failure.ClassBackPressure:
		return verdict{Kind: delay, Delay: retry.Jitter(a.Wait)}
	case failure.ClassFleetWide:
		return verdict{Kind: pause, Delay: r.ProbeEvery, Reason: "fleet-wide fault"}
	case failure.ClassPermanent:
		return verdict{Kind: deadLetter, Reason: "permanent failure"}
	}
	if outage(a, r) {
		return verdict{Kind: pause, Delay: r.ProbeEvery, Reason: "repeated failures across batches"}
	}
	n := a.Failures
	if n >= r.MaxFailures {
		return verdict{Kind: deadLetter, Reason: fmt.Sprintf("%d failed attempts", n)}
	}
	wait := retry.Backoff(max(n, 1), retryBase, r.MaxBackoff)
	if n >= r.SplitAfter && a.TooBig && a.CanSplit {
		return verdict{Kind: split, Delay: wait, Attempt: n}
	}
	return verdict{Kind: retryLater, Delay: wait, Attempt: n}
}

// stopping reports whether err comes from this worker stopping rather than
// from the batch.
func stopping(ctx context.Context, err error) bool {
	cause := context.Cause(ctx)
	return ctx.Err() != nil && (errors.Is(err, cause) || errors.Is(err, context.Canceled) || errors.Is(err, errGraceOver))
}

// tooBig reports what an oversized batch does to a call: a stall, a slow
// first byte, or a request refused for its size.
func tooBig(err error) bool {
	var te interface{ Timeout() bool }
	return errors.Is(err, qualys.ErrIdleTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, qualys.ErrTooLarge) || (errors.As(err, &te) && te.Timeout())
}
