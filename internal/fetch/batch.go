package fetch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// handle runs one delivered message to its fate.
func (w *Worker) handle(ctx context.Context, m jetstream.Msg) {
	start := w.cfg.Now()
	md, err := m.Metadata()
	delivery := uint64(0)
	if err == nil {
		delivery = md.NumDelivered
	}
	b, err := msg.Decode(m.Data())
	if err != nil {
		log := w.log.With("subject", m.Subject(), "delivery", delivery)
		w.deadLetter(ctx, m, log, "undecodable batch message", err)
		return
	}
	log := w.log.With("run", b.Run, "batch", b.Key(), "delivery", delivery, "hosts", b.Hosts)
	if rec, err := w.ledger.GetRun(ctx, b.Run); err == nil && rec.State == ledger.RunComplete {
		// A late redelivery of a completed run would overwrite objects the
		// manifest already describes.
		log.Info("run already complete: dropping a late copy of a batch")
		_ = m.Ack()
		return
	}

	w.metrics.inFlight.Inc()
	stopProgress := w.keepInProgress(ctx, m)
	res, err := w.fetch(ctx, b)
	stopProgress()
	w.metrics.inFlight.Dec()
	if err == nil {
		res.Delivery, res.Worker, res.At = delivery, w.cfg.Owner, w.cfg.Now().UTC()
		res.Duration = w.cfg.Now().Sub(start).Seconds()
		err = w.record(ctx, m, res)
	}
	d := delivered{m: m, b: b, log: log}
	w.apply(ctx, d, decide(w.assess(ctx, d, err), w.rules()), res, err)
}

// fetch calls Qualys for batch b and streams every page into the store.
func (w *Worker) fetch(ctx context.Context, b msg.Batch) (ledger.BatchResult, error) {
	ids, err := hostids.Parse(b.IDs)
	if err != nil {
		return ledger.BatchResult{}, failure.Permanent(fmt.Errorf("batch %s: %w", b.Key(), err))
	}
	pager := w.api.DetectionPager(qualys.DetectionQuery{
		IDs:             ids.IDs(),
		ProcessedAfter:  b.After,
		ProcessedBefore: b.Before,
		TruncationLimit: w.cfg.TruncationLimit,
		Extra:           b.Params,
	})
	res := ledger.BatchResult{Run: b.Run, Batch: b.Key(), HostsRequested: b.Hosts}
	for !pager.Done() {
		page := pager.Cursor().Page
		key := objstore.DetectionPartKey(w.cfg.Prefix, b.Run, b.Number, b.Part, page)
		obj, resp, err := w.fetchPage(ctx, pager, key)
		if err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
		sum := resp.Summary()
		obj.Hosts = sum.Hosts
		res.Objects = append(res.Objects, obj)
		res.HostsReturned += sum.Hosts
		w.metrics.bytes.Add(float64(obj.Bytes))
		if err := pager.Advance(resp); err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
	}
	return res, nil
}

// fetchPage streams the pager's current page into key and returns the
// closed response, read whole. The validator inside the response fails the
// last read of anything but a whole, well-formed answer, so the store
// aborts the upload and nothing partial appears (I2).
func (w *Worker) fetchPage(ctx context.Context, pager *qualys.DetectionPager, key string) (objstore.Object, *qualys.Response, error) {
	resp, err := pager.Open(ctx, nil)
	if err != nil {
		w.metrics.observeResponse(err, 0)
		return objstore.Object{}, nil, err
	}
	defer resp.Close()
	putStart := w.cfg.Now()
	obj, err := w.store.Put(ctx, key, resp, objstore.PutOptions{ContentType: "application/xml"})
	w.metrics.observeResponse(err, resp.Status)
	w.metrics.upload.Observe(w.cfg.Now().Sub(putStart).Seconds())
	if err != nil {
		return objstore.Object{}, nil, err
	}
	return obj, resp, nil
}

// record writes the batch result, then acks: in that order, so that a crash
// between the two redelivers the batch, which overwrites its own keys (I3).
func (w *Worker) record(ctx context.Context, m jetstream.Msg, r ledger.BatchResult) error {
	if err := w.ledger.MarkDone(ctx, r); err != nil {
		return fmt.Errorf("recording batch %s done: %w", r.Batch, err)
	}
	if err := m.DoubleAck(ctx); err != nil {
		// The result is recorded; a redelivery just repeats the work.
		return fmt.Errorf("acking batch %s: %w", r.Batch, failure.Retryable(err))
	}
	return nil
}

// keepInProgress tells JetStream the batch is still being worked on, so a
// long body outliving AckWait is not handed to another worker. The returned
// func stops it and waits for its goroutine.
func (w *Worker) keepInProgress(ctx context.Context, m jetstream.Msg) func() {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(w.cfg.InProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = m.InProgress() // a lost one is covered by the next tick
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// delivered is one message being handled, with its batch and logger.
type delivered struct {
	m   jetstream.Msg
	b   msg.Batch
	log *slog.Logger
}

func (w *Worker) rules() rules {
	return rules{MaxFailures: w.q.Config().MaxFailures, SplitAfter: w.cfg.SplitAfter,
		BreakAfter: w.cfg.BreakAfter, ProbeEvery: w.cfg.ProbeEvery, MaxBackoff: w.cfg.MaxBackoff}
}

// assess gathers what decide needs about an attempt that ended with err
// (nil: stored). The streak and the batch's failure count change only for
// the failures that count in them.
func (w *Worker) assess(ctx context.Context, d delivered, err error) attempt {
	if err == nil {
		return attempt{Stored: true}
	}
	b := d.b
	a := attempt{Class: failure.ClassOf(err), Stopping: stopping(ctx, err), TooBig: tooBig(err),
		Wait: failure.WaitOf(err), CanSplit: b.Hosts > 1}
	if counted(a) {
		a.Streak = w.streak.fail(b.Run + "/" + b.Key())
	}
	if charged(a, w.rules()) {
		n, cerr := w.ledger.CountFailure(context.WithoutCancel(ctx), b.Run, b.Key())
		if cerr != nil {
			d.log.Warn("counting the failure", "err", cerr)
		}
		a.Failures = n
	}
	return a
}

// apply carries out verdict v on a delivered batch: the one place where a
// decision becomes Acks, Naks, pauses, metrics and logs. res is the stored
// result (ack) and err the attempt's failure (all others).
func (w *Worker) apply(ctx context.Context, d delivered, v verdict, res ledger.BatchResult, err error) {
	// Whatever happened, a batch handed back must not wait on a context
	// that is already over.
	actx := context.WithoutCancel(ctx)
	class := failure.ClassOf(err).String()
	switch v.Kind {
	case ack:
		w.streak.reset()
		w.metrics.batches.WithLabelValues("done", "").Inc()
		d.log.Info("batch stored", "bytes", res.Bytes(), "objects", len(res.Objects),
			"hosts_returned", res.HostsReturned, "seconds", res.Duration)
		if w.finish != nil {
			if err := w.finish.TryFinish(ctx, d.b.Run); err != nil {
				d.log.Warn("trying to finish the run", "err", err)
			}
		}
	case handBack:
		w.metrics.batches.WithLabelValues("returned", "stop").Inc()
		d.log.Info("stopping: batch handed back", "err", err)
		w.nak(d.m, 0, d.log)
	case delay:
		w.gate.pauseFor(v.Delay)
		w.metrics.waited.Add(v.Delay.Seconds())
		w.metrics.batches.WithLabelValues("delayed", class).Inc()
		d.log.Warn("back-pressure: batch delayed", "wait", v.Delay, "err", err)
		w.nak(d.m, v.Delay, d.log)
	case pause:
		w.gate.setFault(err)
		w.metrics.faulted.Set(1)
		w.metrics.batches.WithLabelValues("delayed", class).Inc()
		d.log.Error(v.Reason+": pausing this worker; the batch stays queued", "err", err)
		w.nak(d.m, v.Delay, d.log)
	case deadLetter:
		w.deadLetter(actx, d.m, d.log, v.Reason, err)
	case split:
		if w.split(actx, d.m, d.b, err, d.log) {
			return
		}
		w.retry(d, v, class, err)
	case retryLater:
		w.retry(d, v, class, err)
	}
}

func (w *Worker) retry(d delivered, v verdict, class string, err error) {
	w.metrics.batches.WithLabelValues("retried", class).Inc()
	d.log.Warn("batch failed; retrying", "attempt", v.Attempt, "class", class, "next", v.Delay, "err", err)
	w.nak(d.m, v.Delay, d.log)
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

func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, log *slog.Logger, reason string, err error) {
	w.metrics.batches.WithLabelValues("dead-lettered", failure.ClassOf(err).String()).Inc()
	if dlErr := w.q.DeadLetter(ctx, m, reason, err); dlErr != nil {
		log.Error("dead-lettering failed; the batch stays queued", "reason", reason, "err", err, "dlq_err", dlErr)
		w.nak(m, w.cfg.ProbeEvery, log)
		return
	}
	log.Error("batch dead-lettered", "reason", reason, "class", failure.ClassOf(err).String(), "err", err)
}

// split replaces a batch that keeps timing out with its two halves.
func (w *Worker) split(ctx context.Context, m jetstream.Msg, b msg.Batch, cause error, log *slog.Logger) bool {
	first, second, err := b.Split()
	if err != nil {
		return false
	}
	s := ledger.Split{Batch: b.Key(), Halves: [2]string{first.Key(), second.Key()}, Reason: cause.Error(), At: w.cfg.Now().UTC()}
	// Record first: completion must know the batch is replaced before the
	// halves can finish.
	if err := w.ledger.MarkSplit(ctx, b.Run, s); err != nil {
		log.Warn("recording a split failed", "err", err)
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
		// The split record stands; redelivery splits again under the same
		// Msg-Ids, which the stream deduplicates.
		log.Warn("publishing split halves failed", "err", err)
		return false
	}
	if err := m.Term(); err != nil {
		log.Warn("terminating a split batch failed", "err", err)
	}
	w.metrics.batches.WithLabelValues("split", failure.ClassOf(cause).String()).Inc()
	log.Warn("batch split after repeated timeouts", "halves", s.Halves, "err", cause)
	return true
}
