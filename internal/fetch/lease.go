package fetch

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost is the cause a batch's work is cancelled with when its
// worker could not show JetStream, for AckWait minus the margin, that it
// still holds the batch (a partition, a long disconnect, a frozen process):
// by then the batch may be handed to another worker, and two calls for it
// at Qualys would break the fleet's cap (I5).
var ErrLeaseLost = errors.New("batch lease lost: its renewal was not confirmed in time")

// lease renews m's lease every InProgressEvery for as long as the batch
// runs, each renewal confirmed by the server. The returned context is ctx,
// cancelled with ErrLeaseLost once AckWait − LeaseMargin has passed since
// the last renewal the server confirmed was sent (or since delivered): the
// server's own clock restarted no earlier than that send, so the work stops
// before the server can redeliver. stop ends the renewals and waits for
// them.
func (w *Worker) lease(ctx context.Context, m jetstream.Msg, delivered time.Time, ackWait time.Duration) (_ context.Context, stop func()) {
	lctx, cancel := context.WithCancelCause(ctx)
	margin := w.cfg.LeaseMargin
	if ackWait < w.q.Config().AckWait { // shortened by a newer pod: scale with it
		margin = max(ackWait/5, 100*time.Millisecond)
	}
	life := ackWait - margin
	every := min(w.cfg.InProgressEvery, max(life/2, time.Millisecond))
	// The deadline runs on its own timer: a renewal waiting for its answer
	// must not hold it back.
	var once sync.Once
	lapse := func() {
		once.Do(func() {
			cancel(ErrLeaseLost)
			w.metrics.leasesLost.Inc()
		})
	}
	// expires is the lease's end as last confirmed. stop checks it too: a
	// process thawed after a freeze runs whichever overdue timer comes
	// first, and a call's idle timeout must not pass for a failure of a
	// batch whose lease had lapsed meanwhile.
	var expires atomic.Int64
	expires.Store(delivered.Add(life).UnixNano())
	deadline := time.AfterFunc(time.Until(delivered.Add(life)), lapse)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-lctx.Done():
				return
			case <-tick.C:
				sent := time.Now()
				rctx, rcancel := context.WithTimeout(lctx, every)
				err := w.q.Progress(rctx, m)
				rcancel()
				// A timer that fired stays fired: a late answer revives
				// nothing.
				if err == nil && lctx.Err() == nil {
					expires.Store(sent.Add(life).UnixNano())
					deadline.Reset(time.Until(sent.Add(life)))
				}
			}
		}
	})
	return lctx, func() {
		close(done)
		wg.Wait()
		deadline.Stop()
		if time.Now().UnixNano() >= expires.Load() {
			lapse()
		}
		cancel(nil)
	}
}

// leaseLost reports whether ctx was cancelled because its lease lapsed.
func leaseLost(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), ErrLeaseLost)
}
