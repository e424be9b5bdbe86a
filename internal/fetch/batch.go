package fetch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/retry"
)

// maxPages bounds how many truncated pages one batch may take: a response
// that keeps saying "more" past it is a fault, not data.
const maxPages = 10000

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
		if err == nil {
			w.streak.reset()
			w.metrics.batches.WithLabelValues("done", "").Inc()
			log.Info("batch stored", "bytes", res.Bytes(), "objects", len(res.Objects),
				"hosts_returned", res.HostsReturned, "seconds", res.Duration)
			if w.finish != nil {
				if err := w.finish.TryFinish(ctx, b.Run); err != nil {
					log.Warn("trying to finish the run", "err", err)
				}
			}
			return
		}
	}
	w.decide(ctx, m, b, delivery, err, log)
}

// fetch calls Qualys for batch b and streams every page into the store.
func (w *Worker) fetch(ctx context.Context, b msg.Batch) (ledger.BatchResult, error) {
	ids, err := qualys.DecodeIDs(b.IDs)
	if err != nil {
		return ledger.BatchResult{}, failure.Permanent(fmt.Errorf("batch %s: %w", b.Key(), err))
	}
	form := qualys.DetectionQuery{
		IDs:             ids,
		ProcessedAfter:  b.After,
		ProcessedBefore: b.Before,
		TruncationLimit: w.cfg.TruncationLimit,
		Extra:           b.Params,
	}.Form()

	res := ledger.BatchResult{Run: b.Run, Batch: b.Key(), HostsRequested: b.Hosts}
	var idMin uint64
	for page := 1; ; page++ {
		if page > maxPages {
			return res, failure.Retryable(fmt.Errorf("batch %s: more than %d truncated pages", b.Key(), maxPages))
		}
		key := objstore.DetectionPartKey(w.cfg.Prefix, b.Run, b.Number, b.Part, page)
		obj, sum, err := w.fetchPage(ctx, form, key)
		if err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
		obj.Hosts = sum.Hosts
		res.Objects = append(res.Objects, obj)
		res.HostsReturned += sum.Hosts
		w.metrics.bytes.Add(float64(obj.Bytes))
		if sum.Warning == nil {
			return res, nil
		}
		next, nextMin, err := qualys.NextDetectionForm(form, sum.Warning, idMin, sum.LastID)
		if err != nil {
			return res, fmt.Errorf("batch %s page %d: %w", b.Key(), page, err)
		}
		form, idMin = next, nextMin
	}
}

// fetchPage streams one detection response into key. The validator inside
// the response fails the last read of anything but a whole, well-formed
// answer, so the store aborts the upload and nothing partial appears (I2).
func (w *Worker) fetchPage(ctx context.Context, form map[string][]string, key string) (objstore.Object, qualys.Summary, error) {
	resp, err := w.api.Detections(ctx, form, nil)
	if err != nil {
		w.metrics.observeResponse(err, 0)
		return objstore.Object{}, qualys.Summary{}, err
	}
	defer resp.Close()
	putStart := w.cfg.Now()
	obj, err := w.store.Put(ctx, key, resp, objstore.PutOptions{ContentType: "application/xml"})
	w.metrics.observeResponse(err, resp.Status)
	w.metrics.upload.Observe(w.cfg.Now().Sub(putStart).Seconds())
	if err != nil {
		return objstore.Object{}, qualys.Summary{}, err
	}
	return obj, resp.Summary(), nil
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

// decide acts on a failed batch, by the class of its error.
func (w *Worker) decide(ctx context.Context, m jetstream.Msg, b msg.Batch, delivery uint64, err error, log *slog.Logger) {
	// Whatever happened, a batch handed back must not wait on a context
	// that is already over.
	actx := context.WithoutCancel(ctx)
	class := failure.ClassOf(err)
	if stopping(ctx, err) {
		// Cut short by our own stop: hand it back at once, uncharged.
		w.metrics.batches.WithLabelValues("returned", "stop").Inc()
		log.Info("stopping: batch handed back", "err", err)
		w.nak(m, 0, log)
		return
	}
	switch class {
	case failure.ClassBackPressure:
		wait := retry.Jitter(failure.WaitOf(err))
		w.gate.pauseFor(wait)
		w.metrics.waited.Add(wait.Seconds())
		w.metrics.batches.WithLabelValues("delayed", class.String()).Inc()
		log.Warn("back-pressure: batch delayed", "wait", wait, "err", err)
		w.nak(m, wait, log)

	case failure.ClassFleetWide:
		w.gate.setFault(err)
		w.metrics.faulted.Set(1)
		w.metrics.batches.WithLabelValues("delayed", class.String()).Inc()
		log.Error("fleet-wide fault: pausing this worker; the batch stays queued", "err", err)
		w.nak(m, w.cfg.ProbeEvery, log)

	case failure.ClassPermanent:
		w.deadLetter(actx, m, log, "permanent failure", err)

	default: // retryable, and anything nobody classified
		// A stall or a size refusal says the batch is too big, whatever
		// else fails: it is always charged, so it gets split. Other
		// failures spread over batches with no success between are an
		// outage: paused, never charged (I6).
		if !tooBig(err) && w.streak.fail(b.Run+"/"+b.Key(), w.cfg.BreakAfter) {
			// Failures across batches with no success between: an outage,
			// not this batch. Pause like a fleet-wide fault, uncharged.
			w.gate.setFault(err)
			w.metrics.faulted.Set(1)
			w.metrics.batches.WithLabelValues("delayed", class.String()).Inc()
			log.Error("repeated failures across batches: pausing this worker; the batch stays queued", "err", err)
			w.nak(m, w.cfg.ProbeEvery, log)
			return
		}
		n, cerr := w.ledger.CountFailure(actx, b.Run, b.Key())
		if cerr != nil {
			log.Warn("counting the failure", "err", cerr)
		}
		if n >= w.q.Config().MaxFailures {
			w.deadLetter(actx, m, log, fmt.Sprintf("%d failed attempts", n), err)
			return
		}
		if n >= w.cfg.SplitAfter && tooBig(err) && b.Hosts > 1 && w.split(actx, m, b, err, log) {
			return
		}
		// 30 s doubling: Qualys' own scripts wait 30 + 2^n s; a 5xx there
		// is rarely gone in a second, and each early retry spends a call.
		wait := retry.Backoff(max(n, 1), 30*time.Second, w.cfg.MaxBackoff)
		w.metrics.batches.WithLabelValues("retried", class.String()).Inc()
		log.Warn("batch failed; retrying", "attempt", n, "class", class.String(), "next", wait, "err", err)
		w.nak(m, wait, log)
	}
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
