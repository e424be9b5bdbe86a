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
// plain values; assess gathers them, from this worker and from the fleet's
// shared state.
type attempt struct {
	Stored    bool          // stored, recorded and acked
	Class     failure.Class // the failure's class
	Stopping  bool          // cut short by this worker's own stop
	LeaseLost bool          // cut short because the batch's lease could not be shown alive
	// Unavailable: JetStream could not serve (a cluster without quorum):
	// the failure says nothing about the batch, and it is no fault the
	// fleet's shared state could record (I6).
	Unavailable bool
	// Bookkeeping: the batch was fetched and stored, and what failed was
	// recording it done or acking it (a JetStream stream or bucket between
	// leaders, on a cluster losing a node). Neither Qualys nor the batch
	// failed: nobody is charged, and the fleet's outage streak, which is
	// for Qualys, does not hear of it.
	Bookkeeping bool
	Maintenance bool          // Qualys is in scheduled maintenance (1999)
	TooBig      bool          // a stall or a size refusal: the batch is too big for one call
	Wait        time.Duration // how long back-pressure asked us to wait
	CanSplit    bool          // the batch holds more than one host
	// Paused: the fleet was paused or held when the failure came, so the
	// failure says nothing about the batch and nobody is charged (I6).
	Paused bool
	// Tripped: this failure completed the fleet's streak, over several
	// batches, and paused the fleet; its charge stands only if the probe
	// then passes.
	Tripped bool
	// Failures is how often this batch is charged, this failure included
	// when it is charged; 0 when counting failed.
	Failures int
}

// rules are the worker's limits the verdict applies.
type rules struct {
	MaxFailures int           // charged failures after which a batch is dead-lettered
	SplitAfter  int           // charged failures of an oversized batch before it is split
	ProbeEvery  time.Duration // how long a batch waits out a fleet pause
	MaxBackoff  time.Duration
}

// retryBase is the first retry's delay: Qualys' own scripts wait 30 + 2^n s;
// a 5xx there is rarely gone in a second, and each early retry spends a call.
const retryBase = 30 * time.Second

// kind is what happens to a batch after an attempt.
type kind uint8

const (
	ack        kind = iota // stored: settle the fleet's streak, try to finish the run
	handBack               // Nak at once, uncharged: this worker is stopping
	abandon                // neither ack nor nak: the lease lapsed, the batch is someone else's
	retryLater             // wait Delay off the queue (a schedule), then deliver again
	hold                   // back-pressure: hold the fleet's pulls for Delay; the batch waits as long
	pause                  // pause the fleet (Pause says why) until a probe passes; the batch waits Delay
	split                  // publish two halves and Term; if that fails, retryLater
	deadLetter             // Term with Reason and leave a dead-letter record
)

var kindNames = [...]string{"ack", "hand back", "abandon", "retry", "hold", "pause", "split", "dead-letter"}

func (k kind) String() string { return kindNames[k] }

// pauseKind is why the fleet pauses: the values are the ledger's.
type pauseKind string

const (
	pauseNone        pauseKind = ""
	pauseFault       pauseKind = "fault"
	pauseMaintenance pauseKind = "maintenance"
)

// verdict is the decision about one attempt.
type verdict struct {
	Kind    kind
	Delay   time.Duration // before the batch is delivered again; for split, the retry's if it cannot be made
	Pause   pauseKind     // for pause: the kind the fleet pauses with
	Reason  string        // why a pause or dead letter
	Attempt int           // the batch's charged failures, for the retry's log
}

// chargeable reports whether a failure counts against the batch (design.md
// I6): back-pressure, fleet-wide faults, a fleet pause, our own stop and a
// lost lease never do. A failure the fleet's breaker later attributes to an
// outage is forgiven after the fact (see Worker.probe).
func chargeable(a attempt) bool {
	return !a.Stored && !a.Stopping && !a.LeaseLost && !a.Unavailable && !a.Bookkeeping && !a.Paused && retryable(a.Class)
}

// streaked reports whether a charged failure joins the fleet's streak:
// every one. A stall or a size refusal may say the batch is too big — or
// that Qualys stalls every call; the probe, one host, tells them apart.
func streaked(a attempt) bool {
	return chargeable(a)
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
//
// A batch whose charges reach MaxFailures is not dead-lettered here but at
// its next delivery, before any call (see Worker.handle): a charge may still
// be forgiven if the fleet's breaker finds an outage, and an outage must
// dead-letter nothing (I6). Its attempts are MaxFailures all the same.
func decide(a attempt, r rules) verdict {
	switch {
	case a.Stored:
		return verdict{Kind: ack}
	case a.Stopping:
		return verdict{Kind: handBack}
	case a.LeaseLost:
		return verdict{Kind: abandon}
	case a.Unavailable:
		return verdict{Kind: retryLater, Delay: r.ProbeEvery, Reason: "JetStream is unavailable"}
	case a.Bookkeeping && retryable(a.Class):
		// The retry's copy finds the claim done and acks it, or, if the
		// done record was what failed, fetches the batch again. A refusal
		// that says it will never pass (permanent) or that is the fleet's
		// is decided by its class below: retried uncharged, it would never
		// be dead-lettered.
		return verdict{Kind: retryLater, Delay: r.ProbeEvery, Reason: "recording the stored batch failed"}
	}
	switch a.Class {
	case failure.ClassBackPressure:
		if a.Maintenance {
			return verdict{Kind: pause, Pause: pauseMaintenance, Delay: r.ProbeEvery, Reason: "Qualys scheduled maintenance"}
		}
		return verdict{Kind: hold, Delay: min(retry.Jitter(a.Wait), qualys.MaxToldWait)}
	case failure.ClassFleetWide:
		return verdict{Kind: pause, Pause: pauseFault, Delay: r.ProbeEvery, Reason: "fleet-wide fault"}
	case failure.ClassPermanent:
		return verdict{Kind: deadLetter, Reason: "permanent failure"}
	}
	if a.Paused {
		return verdict{Kind: retryLater, Delay: r.ProbeEvery, Reason: "the fleet is paused"}
	}
	n := a.Failures
	wait := retry.Backoff(max(n, 1), retryBase, r.MaxBackoff)
	if n >= r.SplitAfter && n < r.MaxFailures && a.TooBig && a.CanSplit {
		return verdict{Kind: split, Delay: wait, Attempt: n}
	}
	return verdict{Kind: retryLater, Delay: wait, Attempt: n}
}

// spent reports whether a batch charged n times has no attempt left.
func spent(n int, r rules) bool { return r.MaxFailures > 0 && n >= r.MaxFailures }

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

// spentReason is the dead letter's reason for a batch whose charges ran out.
func spentReason(n int) string { return fmt.Sprintf("%d failed attempts", n) }
