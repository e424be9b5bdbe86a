package fetch

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/msg"
)

// A JetStream that cannot serve (a cluster that lost its quorum: two
// servers of three down) is a fault of the whole fleet (I6), but not one
// the fleet can record: its pause state lives in JetStream too. So every
// worker finds it for itself — a request of its own answered with
// msg.ErrJetStreamUnavailable, or its watch (Queue.Available) — and then
// pulls nothing, reports not ready (state "nats"), shows
// qfetch_worker_jetstream_unavailable = 1, and asks JetStream again every
// second until it answers: then it pulls again, without a restart. A batch
// in flight meanwhile keeps its call until its lease, which can no longer
// be renewed, runs out (I5); it is given up uncharged and JetStream hands it
// out again once it serves.

// jetStreamDown holds this worker back because JetStream is unavailable.
func (w *Worker) jetStreamDown(err error) {
	if w.nats.fault() == nil {
		w.metrics.jsUnavailable.Set(1)
		w.log.Error("JetStream unavailable: not pulling batches; a batch in flight is given up uncharged when its lease "+
			"cannot be renewed, and redelivered once JetStream serves again; asking every second", "err", err)
	}
	w.nats.setFault(err)
}

// jetStreamBack lets this worker pull again.
func (w *Worker) jetStreamBack() {
	if w.nats.fault() != nil {
		w.log.Info("JetStream answers again: pulling batches")
	}
	w.metrics.jsUnavailable.Set(0)
	w.nats.clearFault()
}

// watchJetStream asks JetStream whether it serves the workers every
// JetStreamCheckEvery, and every second while it does not. A pull that
// fails does not always say why (a pull to a consumer without a leader may
// just come back empty): the watch finds a quorum loss within a period.
func (w *Worker) watchJetStream(ctx context.Context) error {
	for {
		_, changed, down := w.nats.state()
		wait := w.cfg.JetStreamCheckEvery
		if down != nil {
			wait = min(wait, time.Second)
		}
		if waitChange(ctx, wait, changed, nil) != nil {
			return nil
		}
		err := w.q.Available(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			w.jetStreamBack()
		case errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
			errors.Is(err, msg.ErrNotSetUp):
			// JetStream answers, that qfetch's objects are missing (a
			// cluster back without its storage, a deleted consumer): not
			// unavailable. Let the slots pull, so that they report that
			// error, rather than hold them back as unavailable forever.
			w.jetStreamBack()
		case errors.Is(err, msg.ErrJetStreamUnavailable):
			w.jetStreamDown(err)
		}
		// Anything else (NATS not connected: the client reconnects by
		// itself; the consumer not made yet) leaves the state as it is.
	}
}

// natsDownError is Ready's error while JetStream is unavailable.
type natsDownError struct{ err error }

func (e *natsDownError) Error() string { return "JetStream unavailable: not pulling: " + e.err.Error() }

func (e *natsDownError) Unwrap() error { return e.err }

// ReadyState is the /readyz state word: NATS (app.StateNATS).
func (e *natsDownError) ReadyState() string { return "nats" }
