package fetch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualys"
)

// waitPull returns when this worker may pull: the fleet is neither paused
// nor held, and no local fallback pause is in force; or ctx's error.
func (w *Worker) waitPull(ctx context.Context) error {
	for {
		if _, changed, down := w.nats.state(); down != nil {
			if err := waitChange(ctx, 0, changed, nil); err != nil {
				return err
			}
			continue
		}
		st, fleetChanged := w.fleet.Snapshot()
		until, localChanged, faulted := w.local.state()
		if st.HoldUntil.After(until) {
			until = st.HoldUntil
		}
		wait := time.Until(until)
		if st.Pause == nil && faulted == nil && wait <= 0 {
			return nil
		}
		if err := waitChange(ctx, wait, fleetChanged, localChanged); err != nil {
			return err
		}
	}
}

// waitChange waits until d has passed (d ≤ 0: no limit), a or b is closed
// (nil: never), or ctx ends.
func waitChange(ctx context.Context, d time.Duration, a, b <-chan struct{}) error {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-a:
	case <-b:
	case <-timer:
	}
	return nil
}

// follow keeps the fleet snapshot current for as long as the worker runs;
// a broken watch (NATS away) is started again.
func (w *Worker) follow(ctx context.Context) error {
	for {
		err := w.fleet.Follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.log.Warn("following the fleet's state failed; following again", "err", err)
		if sleep(ctx, time.Second) != nil {
			return nil
		}
	}
}

// pauseFleet pauses the fleet with kind; when the shared state cannot be
// written this process pauses alone, and its probe clears that.
func (w *Worker) pauseFleet(ctx context.Context, kind pauseKind, reason string, cause error) {
	if _, err := w.fleet.Pause(ctx, ledger.PauseKind(kind), reason+": "+errText(cause)); err != nil {
		w.log.Warn("recording the fleet pause failed; pausing this worker alone", "kind", kind, "err", err)
		w.local.setFault(cause)
	}
}

// holdFleet keeps every worker from pulling until until.
func (w *Worker) holdFleet(ctx context.Context, until time.Time, cause error) {
	if err := w.fleet.Hold(ctx, until, errText(cause)); err != nil {
		w.log.Warn("recording the fleet's back-pressure hold failed; holding this worker alone", "err", err)
		w.local.pauseFor(until.Sub(w.cfg.Now()))
	}
}

// errText is an error's text for the fleet's record; the error texts
// qfetch builds carry no secret (the Qualys client scrubs what it quotes).
func errText(err error) string {
	if err == nil {
		return ""
	}
	const max = 300
	s := err.Error()
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}

// probe runs in every worker. While the fleet is paused, one worker per
// probe period (the ledger's probe claim decides which) makes the smallest
// detection call and checks the bucket, and settles the pause:
//
//   - it passes: the fleet resumes, and the charges of the failures that
//     tripped the breaker stand — those batches failed on their own;
//   - it fails as the fault does: the pause stays; after a tripped breaker,
//     the first such probe proves an outage, and the charges are forgiven;
//   - it fails otherwise (a 404 at a gateway, a 400; see probeConfirms):
//     that proves nothing, so the fleet resumes, the charges stand, and
//     real calls decide — a probe must never keep the fleet from its work
//     by itself;
//   - Qualys asks for patience (1960, 1965): it is up; the fleet holds for
//     the wait and resumes.
func (w *Worker) probe(ctx context.Context) error {
	var lastLog time.Time
	for {
		st, changed := w.fleet.Snapshot()
		local := w.local.fault()
		w.metrics.setPause(st, local)
		if st.Pause == nil && local == nil {
			// Wake when the hold ends too: its gauge must drop.
			if waitChange(ctx, time.Until(st.HoldUntil), changed, w.local.changedCh()) != nil {
				return nil
			}
			continue
		}
		period := w.probePeriod(st)
		if ok, err := w.claimProbe(ctx, st, period); err != nil || !ok {
			if err != nil {
				w.log.Warn("claiming the fleet probe failed", "err", err)
			}
			if waitChange(ctx, period, changed, nil) != nil {
				return nil
			}
			continue
		}
		err := w.probeOnce(ctx, st, period)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			w.metrics.probes.WithLabelValues("ok").Inc()
			w.log.Info("fleet probe passed; pulling again", "was", pauseText(st, local))
			w.resume(ctx)
		case failure.ClassOf(err) == failure.ClassBackPressure && !errors.Is(err, qualys.ErrMaintenance):
			// Qualys answers and only asks for patience: no outage.
			w.metrics.probes.WithLabelValues("ok").Inc()
			w.holdFleet(ctx, w.cfg.Now().Add(failure.WaitOf(err)), err)
			w.resume(ctx)
		case !probeConfirms(st, local, err):
			w.metrics.probes.WithLabelValues("unexpected").Inc()
			w.log.Warn("fleet probe answered unexpectedly; resuming, and real calls decide", "err", err,
				"was", pauseText(st, local))
			w.resume(ctx)
		default:
			w.metrics.probes.WithLabelValues("failed").Inc()
			w.probeFailed(ctx, err)
			if now := w.cfg.Now(); now.Sub(lastLog) >= time.Minute {
				lastLog = now
				w.log.Error("fleet paused: not pulling batches; they stay queued", "pause", pauseText(st, local),
					"probe_err", err, "next_probe", period)
			}
		}
		if waitChange(ctx, period, nil, nil) != nil {
			return nil
		}
	}
}

// probePeriod is the probe's period for st: constant for an outage or
// maintenance (resume within a period of its end), backing off to 16
// periods for a fleet-wide fault, which an operator must fix.
func (w *Worker) probePeriod(st ledger.FleetState) time.Duration {
	if st.Pause == nil || st.Pause.Kind != ledger.PauseFault {
		return w.cfg.ProbeEvery
	}
	return w.cfg.ProbeEvery << min(st.Pause.Probes, 4)
}

// claimProbe reports whether this worker probes now. A fleet pause is
// probed by one worker per period, and not while the fleet's calls are at
// the cap: the probe is a detection call too (I5). A pause of this worker
// alone comes from NATS refusing the fleet's record; a NATS that answers
// again ends it (see probeOnce).
func (w *Worker) claimProbe(ctx context.Context, st ledger.FleetState, period time.Duration) (bool, error) {
	if time.Now().Before(st.HoldUntil) {
		return false, nil // Qualys asked for patience: not even a probe
	}
	// The cap first: a claim taken and then not used would leave the
	// fleet unprobed for a period.
	pending, limit, err := w.q.InFlight(ctx)
	if err != nil {
		return false, err
	}
	if st.Pause != nil && limit > 0 && pending >= limit {
		// One free slot is all the probe needs; once it passes, the
		// fleet's pulls take the other copies back as they come.
		w.freeLostCopies(ctx, pending-limit+1)
		return false, nil
	}
	if st.Pause == nil {
		return true, nil
	}
	if ok, err := w.fleet.ClaimProbe(ctx, period); err != nil || !ok {
		return false, err
	}
	// The snapshot may be stale: a probe after the fleet resumed would run
	// beside the calls it let go (I5).
	now, err := w.fleet.State(ctx)
	if err != nil || now.Pause == nil || time.Now().Before(now.HoldUntil) {
		return false, err
	}
	return true, nil
}

// freeLostCopies frees the cap of a paused fleet from the copies whose
// workers lost them (a killed pod, an ack lost in a failover). JetStream
// hands such a copy out again, once its AckWait is over, only to a pull,
// and a paused fleet pulls nothing: the copies would hold the cap, and so
// keep the probe from running, for ever. At the cap a pull gets nothing
// but such copies (or, should a call end meanwhile, a batch whose slot it
// freed), and no call is made for any of them (I5): see freeCopy. The
// next period's probe runs in the slots they held.
func (w *Worker) freeLostCopies(ctx context.Context, n int) {
	freed := 0
	for range n {
		m, err := w.q.Next(ctx, 100*time.Millisecond)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("fleet paused at the cap: pulling the copies that may hold it failed", "err", err)
		}
		if m == nil || !w.freeCopy(ctx, m) {
			break
		}
		freed++
	}
	if freed > 0 {
		w.log.Warn("fleet paused at the cap: copies their workers lost were taken off the queue, so that the probe can run",
			"copies", freed)
	}
}

// freeCopy takes m off the queue without a call, and reports whether its
// slot is free now: parked as a retry due now, which holds no slot; or,
// when it cannot be parked and is no batch (a forged message), or is a
// batch that no schedule can hold (too large for the schedule's headers),
// dead-lettered, where a replay can bring it back once the limit is
// raised: kept, it would hold the cap for ever (I6). Failing that, m waits
// a probe period with a Nak, holding its slot as it did, and the rescue
// stops until the next period rather than pull it again at once.
func (w *Worker) freeCopy(ctx context.Context, m jetstream.Msg) bool {
	log := w.log.With("subject", m.Subject())
	err := w.q.Park(ctx, m, time.Now())
	switch {
	case err == nil:
		return true
	case errors.Is(err, msg.ErrRetryNotAcked):
		log.Warn("a lost copy was parked but could not be acked; it returns after AckWait as a duplicate", "err", err)
		return false
	}
	b, derr := msg.Decode(m.Data())
	notBatch := derr != nil || m.Subject() != b.Subject()
	if notBatch || errors.Is(err, msg.ErrTooLargeToRetry) {
		reason := "no batch, and it could not be taken off the queue while the fleet was paused at its cap"
		cause := failure.Permanent(fmt.Errorf("%w (parking it: %w)", cmp.Or(derr, msg.ErrBadBatch), err))
		if !notBatch {
			reason = "it could not be taken off the queue while the fleet was paused at its cap: " +
				"too large to be scheduled again (raise the stream's maximum message size, then replay it)"
			cause = err
		}
		dlErr := w.q.DeadLetter(ctx, m, reason, cause)
		if dlErr == nil {
			w.metrics.batches.WithLabelValues("dead-lettered", failure.ClassPermanent.String()).Inc()
			log.Error("message dead-lettered", "reason", reason, "err", cause)
			return true
		}
		err = errors.Join(err, dlErr)
	}
	log.Warn("a lost copy could not be taken off the queue; it waits a probe period, holding its slot",
		"err", err, "next", w.cfg.ProbeEvery)
	w.nak(m, w.cfg.ProbeEvery, log)
	return false
}

// probeOnce checks every side a fault may come from: a fault does not
// always say which (a certificate, a DNS name); the dead-letter stream too. Without a fleet pause (this
// worker alone is paused) it calls no Qualys: the other workers may be
// using every call the cap allows, and the fault that paused this one, if
// it lasts, pauses the fleet at its next call, now that NATS records it.
func (w *Worker) probeOnce(ctx context.Context, st ledger.FleetState, period time.Duration) error {
	if st.Pause != nil {
		// The claim is kept while the probe runs, and the probe bounded: a
		// slow probe must not leave the next period's prober calling
		// beside it (I5), nor a hung one hold the fleet for ever.
		timeout := max(10*period, 2*time.Second)
		stopKeep := w.keepProbe(ctx, period)
		err := w.probeQualys(ctx, timeout)
		stopKeep()
		if err != nil {
			return err
		}
	}
	if err := w.store.Check(ctx); err != nil {
		return err
	}
	// A fleet paused because no batch could be dead-lettered resumes only
	// once the stream takes records again.
	return w.q.CheckDeadLetters(ctx)
}

// probeQualys makes the probe's detection call, bounded by timeout, and
// keeps the limit headers it answers with.
func (w *Worker) probeQualys(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	lim, err := w.api.Probe(ctx)
	w.metrics.observeLimits(lim)
	return err
}

// keepProbe renews the probe claim every quarter period until stop, so
// that one slow renewal (a loaded NATS) does not let the claim lapse while
// the probe's call runs and another worker's probe start beside it (I5); a
// claim lost to another worker cancels nothing (the probe is nearly over).
func (w *Worker) keepProbe(ctx context.Context, period time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period / 4)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := w.fleet.KeepProbe(ctx, period); err != nil && ctx.Err() == nil {
					w.log.Warn("keeping the probe claim", "err", err)
					return
				}
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// probeConfirms reports whether a failed probe shows the fault the fleet
// is paused for: a 5xx, a transport failure, a timeout or a body cut short,
// or maintenance, for any pause; a fleet-wide refusal only for a fleet-wide
// fault. Anything else — a 404 at a gateway that serves only the batch
// calls, a 400, a 200 carrying a code nobody knows — proves nothing, and
// the fleet resumes: real calls decide, and pause it again if they must.
func probeConfirms(st ledger.FleetState, local, err error) bool {
	var api qualys.APIError
	answered := errors.As(err, &api)
	switch failure.ClassOf(err) {
	case failure.ClassRetryable:
		return !answered || api.Status >= 500
	case failure.ClassBackPressure:
		return errors.Is(err, qualys.ErrMaintenance)
	case failure.ClassFleetWide:
		return local != nil || (st.Pause != nil && st.Pause.Kind == ledger.PauseFault)
	}
	return false
}

func (w *Worker) resume(ctx context.Context) {
	if err := w.fleet.Resume(ctx); err != nil {
		w.log.Warn("clearing the fleet pause failed", "err", err)
	}
	w.local.clearFault()
}

// probeFailed records a failed probe; the first one after a tripped breaker
// proves an outage, so the failures that tripped it are forgiven (I6).
func (w *Worker) probeFailed(ctx context.Context, err error) {
	forgive, ferr := w.fleet.ProbeFailed(ctx, errText(err))
	if ferr != nil {
		w.log.Warn("recording a failed fleet probe", "err", ferr)
		return
	}
	for _, s := range forgive {
		if err := w.ledger.ForgiveFailure(context.WithoutCancel(ctx), s.Run, s.Batch); err != nil {
			w.log.Warn("forgiving an outage's charge", "run", s.Run, "batch", s.Batch, "err", err)
		}
	}
	if len(forgive) > 0 {
		w.log.Warn("outage confirmed by the probe: its failures are charged to no batch", "forgiven", len(forgive))
	}
}

func pauseText(st ledger.FleetState, local error) string {
	if p := st.Pause; p != nil {
		return fmt.Sprintf("%s: %s", p.Kind, p.Reason)
	}
	if local != nil {
		return "this worker: " + local.Error()
	}
	return ""
}

// gate is this process's own pause, for when the fleet's shared state
// cannot be written: until a time (back-pressure) or while a fault lasts.
type gate struct {
	now func() time.Time

	mu      sync.Mutex
	until   time.Time
	faulted error
	changed chan struct{} // closed and replaced on every change
}

func newGate(now func() time.Time) *gate {
	return &gate{now: now, changed: make(chan struct{})}
}

func (g *gate) notify() {
	close(g.changed)
	g.changed = make(chan struct{})
}

// pauseFor keeps slots from pulling for d (the longest pause wins).
func (g *gate) pauseFor(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if until := g.now().Add(d); until.After(g.until) {
		g.until = until
		g.notify()
	}
}

func (g *gate) setFault(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	first := g.faulted == nil
	g.faulted = err
	if first {
		g.notify()
	}
}

func (g *gate) clearFault() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.faulted != nil {
		g.faulted = nil
		g.notify()
	}
}

func (g *gate) fault() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.faulted
}

func (g *gate) changedCh() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.changed
}

func (g *gate) state() (until time.Time, changed <-chan struct{}, faulted error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until, g.changed, g.faulted
}
