package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qparams"
	"github.com/qfetch/qfetch/internal/qualys"
)

// handle runs one delivered message to its fate.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	start := w.cfg.Now()
	received := time.Now()
	delivery := msg.Deliveries(m)
	b, err := msg.Decode(m.Data())
	if err != nil {
		log := w.log.With("subject", m.Subject(), "delivery", delivery)
		reason := "undecodable batch message"
		if pe := (*qparams.Error)(nil); errors.As(err, &pe) {
			// Forged or misrouted: say which parameter (never its value).
			reason = "batch message refused: " + pe.Error()
		}
		w.deadLetter(ctx, m, log, reason, err)
		return
	}
	log := w.log.With("run", b.Run, "batch", b.Key(), "delivery", delivery, "hosts", b.Hosts)
	if why := kindMismatch(b); why != "" {
		// Before the record is read or a claim taken: nothing of it may
		// be written anywhere.
		w.deadLetter(context.WithoutCancel(ctx), m, log, "batch kind is not its run's",
			failure.Permanent(fmt.Errorf("batch %s: %w: %s", b.Key(), msg.ErrBadBatch, why)))
		return
	}
	rec, err := w.ledger.GetRun(ctx, b.Run)
	if errors.Is(err, ledger.ErrRunNotFound) {
		// Every batch is published after its run's record: this one was
		// forged or misrouted. Fetching it would also make its claim final
		// for a run of that ID yet to come.
		w.deadLetter(context.WithoutCancel(ctx), m, log, "batch of a run with no record",
			failure.Permanent(fmt.Errorf("batch %s: %w", b.Key(), err)))
		return
	}
	if err == nil {
		switch {
		case !sameRequest(b, rec):
			// Validate passes any allowed name and any window: only the
			// run's record says what its batches ask (I7), and its
			// manifest reports that, not this message.
			w.deadLetter(context.WithoutCancel(ctx), m, log, "batch window or parameters are not its run's",
				failure.Permanent(fmt.Errorf("batch %s: %w: window or parameters differ from the run record", b.Key(), msg.ErrBadBatch)))
			return
		case rec.State == ledger.RunComplete:
			// A cheap early exit only: the batch's claim is what keeps a
			// late copy out of a sealed run (I8).
			w.metrics.batches.WithLabelValues("late", "").Inc()
			log.Info("run already complete: dropping a late copy of a batch")
			_ = m.Ack()
			return
		case rec.State == ledger.RunFailed || rec.Accepted != nil:
			w.drain(ctx, m, b, rec, log)
			return
		}
	}
	st, _ := w.fleet.Snapshot()
	d := delivered{m: m, b: b, log: log, started: start, since: st.Revision, copy: w.copyOf(m, delivery)}
	if err != nil {
		// Unchecked against its record, the batch could ask what its run
		// does not (I7); the claim needs the same KV anyway. Give it back
		// uncharged, without a call.
		log.Warn("reading the run record failed: batch given back without a call", "err", err, "next", w.cfg.ProbeEvery)
		w.later(context.WithoutCancel(ctx), d, w.cfg.ProbeEvery)
		return
	}
	if st.Paused(w.cfg.Now()) {
		// A pull already waiting at the server when the fleet paused: give
		// the batch back uncharged, without a call.
		wait := max(st.HoldUntil.Sub(w.cfg.Now()), 0)
		if st.Pause != nil {
			wait = max(wait, w.cfg.ProbeEvery)
		}
		log.Info("the fleet is paused: batch given back without a call", "next", wait)
		w.later(context.WithoutCancel(ctx), d, wait)
		return
	}
	if n, err := w.ledger.FailureCount(ctx, b.Run, b.Key()); err == nil && spent(n, w.rules()) {
		w.spent(ctx, d, n, delivery, received)
		return
	}

	w.metrics.inFlight.Inc()
	lctx, stopLease := w.lease(ctx, m, received, w.ackWait(ctx))
	res, err := w.fetch(lctx, &d)
	stopLease()
	lost := leaseLost(lctx)
	w.metrics.inFlight.Dec()
	switch {
	case errors.Is(err, ledger.ErrBatchSplit):
		// The split is recorded but its halves may not be published (the
		// splitting copy failed there): publish them again — the stream
		// drops the copies it has — then end this one. No call was made.
		if !w.publishHalves(context.WithoutCancel(ctx), b, log) {
			w.nak(m, w.cfg.ProbeEvery, log)
			return
		}
		w.metrics.batches.WithLabelValues("late", "").Inc()
		log.Info("batch already split: its halves are queued; this copy is ended without a call")
		if err := m.Term(); err != nil {
			log.Warn("terminating a copy of a split batch failed; it comes back and is ended again", "err", err)
		}
		return
	case errors.Is(err, ledger.ErrBatchDone):
		// A copy of a batch that is over (a redelivery after a crash
		// between the record and the ack): nothing was asked of Qualys.
		w.metrics.batches.WithLabelValues("late", "").Inc()
		log.Info("batch already done: acking a late copy without a call")
		if err := m.DoubleAck(context.WithoutCancel(ctx)); err != nil {
			log.Warn("acking a late copy failed; it comes back and is acked again", "err", err)
			return
		}
		// The copy that made it done may have died before it tried to
		// finish the run, and may have been its last batch.
		w.tryFinish(ctx, b.Run, log)
		return
	case superseded(err):
		w.yield(ctx, d, err)
		return
	}
	if err == nil && !lost {
		res.Delivery, res.Worker, res.At = delivery, w.cfg.Owner, w.cfg.Now().UTC()
		res.Duration = w.cfg.Now().Sub(start).Seconds()
		err = w.record(ctx, m, d.held, res)
		if superseded(err) {
			w.yield(ctx, d, err)
			return
		}
	} else if err == nil {
		err = ErrLeaseLost
	}
	w.apply(ctx, d, decide(w.assess(ctx, d, err, lost), w.rules()), res, err)
}

// superseded reports an attempt fenced out by a newer copy of its batch:
// the claim was taken over, or an upload of ours was aborted by the taker.
func superseded(err error) bool {
	return errors.Is(err, ledger.ErrSuperseded) || errors.Is(err, objstore.ErrUploadGone)
}

// yield ends a copy that a newer copy of its batch fenced out. A newer
// delivery of the same message is that copy's to ack or nak, so this one
// leaves it alone; a newer message (a retry re-published while this copy's
// ack was lost) carries the batch, so this one is a stale duplicate and is
// acked, or it would come back every AckWait.
func (w *Worker) yield(ctx context.Context, d delivered, err error) {
	w.metrics.batches.WithLabelValues("abandoned", "superseded").Inc()
	c, ok, cerr := w.ledger.GetClaim(context.WithoutCancel(ctx), d.b.Run, d.b.Key())
	if cerr == nil && ok && c.Holder.Seq > d.copy.Seq {
		d.log.Warn("a newer message of this batch holds it: acking this stale copy", "holder", c.Holder.Worker, "err", err)
		_ = d.m.Ack()
		return
	}
	d.log.Warn("batch taken over by a newer copy: this copy stops and leaves it alone", "err", err)
}

// copyOf names this delivery of m for the batch's claim.
func (w *Worker) copyOf(m jetstream.Msg, delivery uint64) ledger.Copy {
	c := ledger.Copy{Worker: w.cfg.Owner, Delivery: delivery}
	if md, err := m.Metadata(); err == nil {
		c.Seq = md.Sequence.Stream
	}
	return c
}

// drain acks a queued batch of a failed or dropped run without a call, so
// that the next run's batches are not kept waiting behind it, and counts it.
func (w *Worker) drain(ctx context.Context, m jetstream.Msg, b msg.Batch, rec ledger.RunRecord, log *slog.Logger) {
	actx := context.WithoutCancel(ctx)
	why := "failed"
	if rec.State != ledger.RunFailed {
		why = "accepted incomplete"
	}
	if err := w.ledger.MarkDrained(actx, b.Run, b.Key()); err != nil {
		// Uncounted but harmless to repeat: the batch comes back.
		log.Warn("recording a drained batch failed; it returns after AckWait", "err", err)
		return
	}
	if err := m.DoubleAck(actx); err != nil {
		log.Warn("acking a drained batch failed; it returns after AckWait", "err", err)
		return
	}
	w.metrics.batches.WithLabelValues("drained", "").Inc()
	log.Info("run "+why+": batch drained without a call", "run_error", rec.Error)
}

// spent ends a batch whose charges reached MaxFailures: its last charge was
// made at its last failure, and dead-lettering waited until now in case the
// fleet's breaker forgave it. One batch failing alone trips no breaker — it
// may be the last of its run, failing in an outage — so a probe, made in
// this batch's slot, decides: Qualys down takes one charge back and pauses
// the fleet; Qualys up (or an answer that proves nothing) dead-letters it.
func (w *Worker) spent(ctx context.Context, d delivered, n int, delivery uint64, received time.Time) {
	actx := context.WithoutCancel(ctx)
	st, _ := w.fleet.Snapshot()
	// The probe holds the batch's slot, so it runs under the batch's lease.
	lctx, stopLease := w.lease(ctx, d.m, received, w.ackWait(ctx))
	perr := w.probeQualys(lctx, max(4*w.cfg.ProbeEvery, 30*time.Second))
	stopLease()
	if leaseLost(lctx) {
		d.log.Warn("lease lost while probing before a dead letter: the batch is left to redelivery", "err", perr)
		return
	}
	down := perr != nil && (probeConfirms(st, nil, perr) || failure.ClassOf(perr) == failure.ClassFleetWide)
	switch {
	case stopping(ctx, perr):
		w.nak(d.m, 0, d.log)
		return
	case perr != nil && failure.ClassOf(perr) == failure.ClassBackPressure && !errors.Is(perr, qualys.ErrMaintenance):
		w.apply(ctx, d, decide(attempt{Class: failure.ClassBackPressure, Wait: failure.WaitOf(perr)}, w.rules()), ledger.BatchResult{}, perr)
		return
	case down:
		if err := w.ledger.ForgiveFailure(actx, d.b.Run, d.b.Key()); err != nil {
			d.log.Warn("taking back a charge the probe blamed on Qualys", "err", err)
		}
		kind, reason := pauseKind(ledger.PauseOutage), "Qualys fails the probe too"
		switch {
		case errors.Is(perr, qualys.ErrMaintenance):
			kind, reason = pauseMaintenance, "Qualys scheduled maintenance"
		case failure.ClassOf(perr) == failure.ClassFleetWide:
			kind, reason = pauseFault, "fleet-wide fault"
		}
		w.pauseFleet(actx, kind, reason, perr)
		d.log.Warn("a batch out of attempts, but Qualys fails the probe too: one charge taken back, the fleet paused", "err", perr)
		w.later(actx, d, w.cfg.ProbeEvery)
		return
	}
	w.deadLetter(actx, d.m, d.log, spentReason(n),
		failure.Retryable(fmt.Errorf("batch %s: charged %d failures, the limit; the last is in the worker log of its delivery %d", d.b.Key(), n, delivery-1)))
}

// ackWait is how long JetStream waits for this batch's ack: the shorter of
// this process's setting and the consumer's, which a newer pod may have
// lowered since this one started (read at most every few seconds).
func (w *Worker) ackWait(ctx context.Context) time.Duration {
	own := w.q.Config().AckWait
	w.ackMu.Lock()
	defer w.ackMu.Unlock()
	if time.Since(w.ackAt) > 10*time.Second {
		if d, err := w.q.AckWait(ctx); err == nil && d > 0 {
			w.ackLive, w.ackAt = d, time.Now()
		}
	}
	if w.ackLive > 0 {
		return min(own, w.ackLive)
	}
	return own
}

// fetch calls Qualys for d's batch and streams every page into the store.
// Each page goes into an upload registered in the batch's claim before a
// byte is sent: the first takes the claim (aborting the uploads of any
// earlier copy), the others join it, so a newer copy can abort them all
// and nothing of this copy lands after it lost the batch (I8).
func (w *Worker) fetch(ctx context.Context, d *delivered) (ledger.BatchResult, error) {
	b := d.b
	ids, err := hostids.Parse(b.IDs)
	if err != nil {
		return ledger.BatchResult{}, failure.Permanent(fmt.Errorf("batch %s: %w", b.Key(), err))
	}
	var pager *qualys.DetectionPager
	var kb *kbAnswer
	if b.Kind == msg.KindKB {
		if w.kb == nil {
			return ledger.BatchResult{}, failure.Permanent(fmt.Errorf("batch %s: this worker has no KnowledgeBase client", b.Key()))
		}
		kb = &kbAnswer{asked: ids.IDs()}
		pager = w.kb.KBPager(qualys.KBQuery{IDs: b.IDs, Details: b.Params.Get("details"), Extra: b.Params})
	} else {
		pager = w.api.DetectionPager(qualys.DetectionQuery{
			IDs:             ids.IDs(),
			ProcessedAfter:  b.After,
			ProcessedBefore: b.Before,
			TruncationLimit: w.cfg.TruncationLimit,
			Extra:           b.Params,
		})
	}
	res := ledger.BatchResult{Run: b.Run, Batch: b.Key(), HostsRequested: b.Hosts}
	for !pager.Done() {
		page := pager.Cursor().Page
		// Routed by the run: a KB pass's answers go under kb/<pass>/vulns/.
		key := objstore.DetectionPartKey(w.cfg.Prefix, b.Run, b.Number, b.Part, page)
		u, err := w.begin(ctx, d, key)
		if err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
		obj, resp, err := w.fetchPage(ctx, pager, u, kb, d.log)
		if err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
		sum := resp.Summary()
		obj.Hosts = sum.Hosts
		if kb != nil {
			obj.Hosts = kb.pageVulns()
		}
		res.Objects = append(res.Objects, obj)
		res.HostsReturned += obj.Hosts
		w.metrics.bytes.Add(float64(obj.Bytes))
		if err := pager.Advance(resp); err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
	}
	if kb != nil {
		res.IDs = hostids.Of(kb.got).String()
	}
	return res, nil
}

// begin starts the upload of key and registers it in the batch's claim,
// taking the claim with the first page. An upload the claim refused is
// aborted again: it must not outlive this attempt.
func (w *Worker) begin(ctx context.Context, d *delivered, key string) (objstore.Upload, error) {
	u, err := w.store.Begin(ctx, key, objstore.PutOptions{ContentType: "application/xml"})
	if err != nil {
		return u, err
	}
	if d.held == nil {
		d.held, err = w.ledger.TakeBatch(ctx, d.b.Run, d.b.Key(), d.copy, u, w.store.Abort)
	} else {
		err = d.held.AddUpload(ctx, u)
	}
	if err != nil {
		w.abort(ctx, u, d.log)
		return u, err
	}
	return u, nil
}

// abort aborts u, even when ctx is over, logging a failure: nothing relies
// on it, since whoever takes the batch next aborts every upload its claim
// lists.
func (w *Worker) abort(ctx context.Context, u objstore.Upload, log *slog.Logger) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := w.store.Abort(actx, u); err != nil {
		log.Warn("aborting an upload", "key", u.Key, "err", err)
	}
}

// fetchPage streams the pager's current page into upload u and returns the
// closed response, read whole. The validator inside the response fails the
// last read of anything but a whole, well-formed answer, so the store
// aborts the upload and nothing partial appears (I2).
//
// kb, set for a KnowledgeBase batch, sees the answer's QIDs and fails the
// read that brings one the batch did not ask for.
func (w *Worker) fetchPage(ctx context.Context, pager *qualys.DetectionPager, u objstore.Upload, kb *kbAnswer, log *slog.Logger) (objstore.Object, *qualys.Response, error) {
	var onID func(uint64)
	if kb != nil {
		onID = kb.onID
	}
	resp, err := pager.Open(ctx, onID)
	if err != nil {
		w.metrics.observeResponse(err, 0)
		w.abort(ctx, u, log)
		return objstore.Object{}, nil, err
	}
	defer resp.Close()
	putStart := w.cfg.Now()
	w.metrics.observeLimits(resp.Limits)
	var body io.Reader = resp
	if kb != nil {
		body = kb.guard(resp)
	}
	obj, err := w.store.Complete(ctx, u, body)
	w.metrics.observeResponse(err, resp.Status)
	w.metrics.upload.Observe(w.cfg.Now().Sub(putStart).Seconds())
	if err != nil {
		return objstore.Object{}, nil, err
	}
	return obj, resp, nil
}

// record makes the batch's claim done with r (which also writes its done
// record), then acks: in that order, so that a crash between the two
// redelivers the batch, whose copy finds the claim done and acks it.
func (w *Worker) record(ctx context.Context, m jetstream.Msg, held *ledger.Held, r ledger.BatchResult) error {
	if err := held.Done(ctx, r); err != nil {
		return fmt.Errorf("recording batch %s done: %w: %w", r.Batch, errBookkeeping, err)
	}
	err := m.DoubleAck(ctx)
	// After the ack, so a conversion never delays it; the done record is
	// final, so its objects are what the sealed run holds.
	w.queueTable(ctx, r, w.log)
	if err != nil {
		// The result is recorded; a redelivery just acks it.
		return fmt.Errorf("acking batch %s: %w: %w", r.Batch, errBookkeeping, failure.Retryable(err))
	}
	return nil
}

// errBookkeeping marks a failure to record a stored batch done or to ack
// it: see attempt.Bookkeeping.
var errBookkeeping = errors.New("the batch is stored, its bookkeeping failed")

// delivered is one message being handled, with its batch and logger.
type delivered struct {
	m       jetstream.Msg
	b       msg.Batch
	log     *slog.Logger
	started time.Time
	since   uint64 // the fleet key's revision this pod saw before the call
	copy    ledger.Copy
	held    *ledger.Held // the batch's claim, once this copy took it
}

func (w *Worker) rules() rules {
	return rules{MaxFailures: w.q.Config().MaxFailures, SplitAfter: w.cfg.SplitAfter,
		ProbeEvery: w.cfg.ProbeEvery, MaxBackoff: w.cfg.MaxBackoff}
}

// assess gathers what decide needs about an attempt that ended with err
// (nil: stored). A chargeable failure is charged at once and then joins the
// fleet's streak; the streak may trip the fleet's breaker, and a failure
// that arrives while the fleet is paused takes its charge back.
func (w *Worker) assess(ctx context.Context, d delivered, err error, lost bool) attempt {
	if err == nil {
		return attempt{Stored: true}
	}
	b := d.b
	a := attempt{Class: failure.ClassOf(err), Stopping: stopping(ctx, err), LeaseLost: lost,
		Maintenance: errors.Is(err, qualys.ErrMaintenance), TooBig: tooBig(err),
		Wait: failure.WaitOf(err), CanSplit: b.Hosts > 1}
	if st, _ := w.fleet.Snapshot(); st.Paused(w.cfg.Now()) || w.local.fault() != nil {
		a.Paused = true
	}
	if errors.Is(err, msg.ErrJetStreamUnavailable) || w.nats.fault() != nil {
		a.Unavailable = true
	}
	a.Bookkeeping = errors.Is(err, errBookkeeping)
	if !chargeable(a) {
		return a
	}
	cctx := context.WithoutCancel(ctx)
	// A failure of a request to JetStream (a claim, a record) does not
	// always say that JetStream cannot serve: ask before charging, so that
	// a quorum loss charges no batch.
	if aerr := w.q.Available(cctx); errors.Is(aerr, msg.ErrJetStreamUnavailable) {
		w.jetStreamDown(aerr)
		a.Unavailable = true
		return a
	}
	n, cerr := w.ledger.CountFailure(cctx, b.Run, b.Key())
	if cerr != nil {
		d.log.Warn("counting the failure", "err", cerr)
	}
	a.Failures = n
	if !streaked(a) || cerr != nil {
		return a
	}
	switch out, ferr := w.fleet.Fail(cctx, ledger.Suspect{Run: b.Run, Batch: b.Key()}, w.cfg.BreakAfter, errText(err)); {
	case ferr != nil:
		d.log.Warn("adding the failure to the fleet's streak", "err", ferr)
	case out == ledger.FailPaused:
		if err := w.ledger.ForgiveFailure(cctx, b.Run, b.Key()); err != nil {
			d.log.Warn("taking back the charge of a failure during a fleet pause", "err", err)
		} else {
			a.Failures = max(n-1, 0)
		}
		a.Paused = true
	case out == ledger.FailTripped:
		a.Tripped = true
	}
	return a
}

// apply carries out verdict v on a delivered batch: the one place where a
// decision becomes Acks, schedules, pauses, metrics and logs. res is the
// stored result (ack) and err the attempt's failure (all others).
func (w *Worker) apply(ctx context.Context, d delivered, v verdict, res ledger.BatchResult, err error) {
	// Whatever happened, a batch handed back must not wait on a context
	// that is already over.
	actx := context.WithoutCancel(ctx)
	class := failure.ClassOf(err).String()
	switch v.Kind {
	case ack:
		if err := w.fleet.Succeeded(actx, d.since); err != nil {
			d.log.Warn("settling the fleet's streak", "err", err)
		}
		w.metrics.batches.WithLabelValues("done", "").Inc()
		d.log.Info("batch stored", "bytes", res.Bytes(), "objects", len(res.Objects),
			"hosts_returned", res.HostsReturned, "seconds", res.Duration)
		w.tryFinish(ctx, d.b.Run, d.log)
	case handBack:
		w.metrics.batches.WithLabelValues("returned", "stop").Inc()
		d.log.Info("stopping: batch handed back", "err", err)
		w.nak(d.m, 0, d.log)
	case abandon:
		w.metrics.batches.WithLabelValues("abandoned", "lease").Inc()
		d.log.Warn("lease lost: the call and upload were stopped and the batch is left to JetStream's redelivery", "err", err)
	case hold:
		until := w.cfg.Now().Add(v.Delay)
		w.holdFleet(actx, until, err)
		w.metrics.waited.Add(v.Delay.Seconds())
		w.metrics.batches.WithLabelValues("delayed", class).Inc()
		d.log.Warn("back-pressure: the fleet holds its pulls; batch delayed", "wait", v.Delay, "err", err)
		w.later(actx, d, v.Delay)
	case pause:
		w.pauseFleet(actx, v.Pause, v.Reason, err)
		w.metrics.batches.WithLabelValues("delayed", class).Inc()
		d.log.Error(v.Reason+": pausing the fleet; the batch stays queued", "err", err)
		w.later(actx, d, v.Delay)
	case deadLetter:
		w.deadLetter(actx, d.m, d.log, v.Reason, err)
	case split:
		if w.split(actx, d, err) {
			return
		}
		w.retry(actx, d, v, class, err)
	case retryLater:
		w.retry(actx, d, v, class, err)
	}
}

func (w *Worker) retry(ctx context.Context, d delivered, v verdict, class string, err error) {
	w.metrics.batches.WithLabelValues("retried", class).Inc()
	msg := "batch failed; retrying"
	switch {
	case v.Reason != "":
		msg = "batch failed while " + v.Reason + "; retrying, uncharged"
	case spent(v.Attempt, w.rules()):
		msg = "batch failed its last attempt; it is dead-lettered at its next delivery unless the fleet finds an outage"
	}
	d.log.Warn(msg, "attempt", v.Attempt, "class", class, "next", v.Delay, "err", err)
	w.later(ctx, d, v.Delay)
}

// later takes the batch off the queue for delay: a schedule delivers it
// again, and the slot is free meanwhile. Should the schedule fail, a Nak
// with the delay keeps the batch, and its slot, until then.
func (w *Worker) later(ctx context.Context, d delivered, delay time.Duration) {
	switch err := w.q.Retry(ctx, d.m, time.Now().Add(delay)); {
	case errors.Is(err, msg.ErrRetryNotAcked):
		// The schedule brings it back; a Nak would only add a second copy.
		d.log.Warn("retry scheduled but the delivered copy could not be acked; it returns after AckWait as a duplicate", "err", err)
	case err != nil:
		d.log.Warn("scheduling the retry failed; the batch waits in the queue instead", "err", err)
		w.nak(d.m, delay, d.log)
	}
}

// park takes m off the queue for delay without holding a slot (see
// msg.Queue.Park); should that fail, a Nak with the delay keeps it.
func (w *Worker) park(ctx context.Context, m jetstream.Msg, log *slog.Logger, delay time.Duration) {
	switch err := w.q.Park(ctx, m, time.Now().Add(delay)); {
	case errors.Is(err, msg.ErrRetryNotAcked):
		log.Warn("message parked but the delivered copy could not be acked; it returns after AckWait as a duplicate", "err", err)
	case err != nil:
		log.Warn("parking the message failed; it waits in the queue instead", "err", err)
		w.nak(m, delay, log)
	}
}

func (w *Worker) nak(m jetstream.Msg, delay time.Duration, log *slog.Logger) {
	var err error
	if delay > 0 {
		err = m.NakWithDelay(delay)
	} else {
		err = m.Nak()
	}
	if err != nil {
		// AckWait hands it back anyway.
		log.Warn("nak failed; the batch returns after AckWait", "err", err)
	}
}

// deadLetter records m in the dead letters and ends it. A record that
// cannot be written leaves m queued. When NATS does not answer at all, that
// is everyone's fault, not the batch's (I6): m waits a probe period, and
// nothing counts. A dead-letter stream that can take no record at all is a
// fleet-wide fault too (I6): the fleet pauses as one (not ready, the fault
// alert) until its probe finds the stream repaired, and m is parked, so
// that it holds no slot — at cap 2, two such messages Nak'ed with a delay
// held every slot, and the probe, which waits for a free one, never ran.
// Otherwise the failure is m's own and counted; after deadLetterTries the
// worker is wedged (Ready says so, a metric and an alert show it) and m
// waits the longest probe back-off between tries: never a tight Nak loop.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, log *slog.Logger, reason string, err error) {
	key := wedgeKey(m)
	dlErr := w.q.DeadLetter(ctx, m, reason, err)
	if dlErr == nil {
		w.wedges.done(key)
		w.metrics.batches.WithLabelValues("dead-lettered", failure.ClassOf(err).String()).Inc()
		log.Error("batch dead-lettered", "reason", reason, "class", failure.ClassOf(err).String(), "err", err)
		return
	}
	if _, _, nerr := w.q.InFlight(ctx); nerr != nil {
		log.Error("dead-lettering failed and NATS does not answer; the batch stays queued", "reason", reason,
			"err", err, "dlq_err", dlErr, "nats_err", nerr)
		w.nak(m, w.cfg.ProbeEvery, log)
		return
	}
	w.metrics.deadLetterFailures.Inc()
	if errors.Is(dlErr, msg.ErrDeadLettersBroken) {
		w.wedges.done(key)
		w.pauseFleet(ctx, pauseFault, "the dead-letter stream is broken", dlErr)
		log.Error("dead-lettering failed: the dead-letter stream is broken; pausing the fleet, the message stays queued",
			"reason", reason, "err", err, "dlq_err", dlErr, "next", w.cfg.ProbeEvery)
		w.park(ctx, m, log, w.cfg.ProbeEvery)
		return
	}
	tries := w.wedges.fail(key, dlErr)
	if tries < deadLetterTries {
		log.Error("dead-lettering failed; the batch stays queued and is tried again", "reason", reason,
			"try", tries, "of", deadLetterTries, "err", err, "dlq_err", dlErr)
		w.nak(m, w.cfg.ProbeEvery, log)
		return
	}
	wait := wedgeBackoff * w.cfg.ProbeEvery
	log.Error("dead-lettering keeps failing: this worker reports not ready until it succeeds; the batch waits",
		"reason", reason, "tries", tries, "next", wait, "err", err, "dlq_err", dlErr)
	w.nak(m, wait, log)
}

// split replaces a batch that keeps timing out with its two halves.
func (w *Worker) split(ctx context.Context, d delivered, cause error) bool {
	m, b, log := d.m, d.b, d.log
	first, second, err := b.Split()
	if err != nil {
		return false
	}
	if d.held == nil {
		// The attempt failed before its first upload; the split must still
		// hold the claim, or a late copy could record the whole batch.
		d.held, err = w.ledger.TakeBatch(ctx, b.Run, b.Key(), d.copy, objstore.Upload{}, w.store.Abort)
	}
	s := ledger.Split{Batch: b.Key(), Halves: [2]string{first.Key(), second.Key()}, Reason: cause.Error(), At: w.cfg.Now().UTC()}
	if err == nil {
		// Record first: completion must know the batch is replaced before
		// the halves can finish, and no copy of the whole batch can record
		// after.
		err = d.held.Split(ctx, s)
	}
	switch {
	case errors.Is(err, ledger.ErrBatchDone):
		if m.DoubleAck(ctx) == nil {
			w.tryFinish(ctx, b.Run, log)
		}
		return true
	case errors.Is(err, ledger.ErrBatchSplit):
		if w.publishHalves(ctx, b, log) {
			_ = m.Term()
		}
		return true
	case superseded(err):
		w.yield(ctx, d, err)
		return true
	case err != nil:
		log.Warn("recording a split failed", "err", err)
		return false
	}
	if !w.publishHalves(ctx, b, log) {
		// The split record stands; the next copy finds the claim split
		// and publishes the halves again.
		return false
	}
	if err := m.Term(); err != nil {
		log.Warn("terminating a split batch failed", "err", err)
	}
	w.metrics.batches.WithLabelValues("split", failure.ClassOf(cause).String()).Inc()
	log.Warn("batch split after repeated timeouts", "halves", s.Halves, "err", cause)
	return true
}

// publishHalves publishes the two halves of split batch b under their
// Msg-Ids, so that publishing them again adds nothing the stream still
// remembers; a copy that arrives later finds its claim done and is acked.
func (w *Worker) publishHalves(ctx context.Context, b msg.Batch, log *slog.Logger) bool {
	first, second, err := b.Split()
	if err != nil {
		log.Error("a batch recorded as split cannot be split", "err", err)
		return false
	}
	pub := w.pub()
	err = pub.Publish(ctx, first)
	if err == nil {
		err = pub.Publish(ctx, second)
	}
	if err == nil {
		err = pub.Wait(ctx)
	}
	if err != nil {
		log.Warn("publishing split halves failed", "err", err)
		return false
	}
	return true
}

// tryFinish completes run if its last batch is in.
func (w *Worker) tryFinish(ctx context.Context, run string, log *slog.Logger) {
	if w.finish == nil {
		return
	}
	if err := w.finish.TryFinish(ctx, run); err != nil {
		log.Warn("trying to finish the run", "err", err)
	}
}

// sameRequest reports whether b asks what its run's record says its
// batches ask: the window and the detection parameters.
func sameRequest(b msg.Batch, rec ledger.RunRecord) bool {
	return b.After.Equal(rec.After) && b.Before.Equal(rec.Before) &&
		maps.EqualFunc(b.Params, rec.Params, slices.Equal)
}
