package tables

import (
	"context"
	"errors"
	"strconv"

	"github.com/qfetch/qfetch/internal/objstore"
)

// Requeuer is the tables stream as a sweep uses it (msg.TableQueue).
type Requeuer interface {
	// TablesPending counts run's jobs in the stream: queued, or delivered
	// and not yet acknowledged.
	TablesPending(ctx context.Context, run string) (uint64, error)
	// RepublishTableJob queues a job again under a Msg-Id of its own
	// (attempt), which a lost first publish's cannot shadow.
	RepublishTableJob(ctx context.Context, run, kind, item, attempt string) error
}

// Sweeper queues again the conversions of a sealed run whose tables never
// completed because their jobs were lost (a purged stream, a publish that
// failed after the batch was recorded): the planner's sweep, so that no
// run waits for `qfetch tables rebuild`.
type Sweeper struct {
	Builder *Builder
	Queue   Requeuer
}

// Requeue queues the conversions sealed run's tables lack, as the
// finisher's Sealed hook does (the part records say what is missing),
// each under attempt's Msg-Id, and completes the tables if nothing is
// missing. It does nothing while any job of the run is still in the
// stream (those conversions are not lost, only waiting) or once its table
// manifest is there (it writes the runs row if that alone is missing).
// It returns how many conversions it queued.
func (s Sweeper) Requeue(ctx context.Context, run, attempt string) (int, error) {
	b := s.Builder
	_, err := b.parts.store.Stat(ctx, ManifestKey(b.parts.prefix, run))
	switch {
	case err == nil:
		_, err := b.TryComplete(ctx, run)
		return 0, err
	case !errors.Is(err, objstore.ErrNotFound):
		return 0, err
	}
	if n, err := s.Queue.TablesPending(ctx, run); err != nil || n > 0 {
		return 0, err
	}
	m, err := sealed(ctx, b.parts.store, b.parts.prefix, run)
	if err != nil {
		return 0, err
	}
	want, err := items(m)
	if err != nil {
		return 0, err
	}
	var batches []string
	var pages []int
	for _, it := range want {
		switch it.table {
		case Detections:
			batches = append(batches, it.item)
		case Hosts:
			n, err := strconv.Atoi(it.item)
			if err != nil {
				return 0, err
			}
			pages = append(pages, n)
		}
	}
	pub := &republisher{q: s.Queue, attempt: attempt}
	rb := *b
	rb.pub = pub
	err = rb.Sealed(ctx, run, batches, pages)
	return pub.n, err
}

// republisher is the Publisher Sealed queues through in a sweep.
type republisher struct {
	q       Requeuer
	attempt string
	n       int
}

func (r *republisher) PublishTableJob(ctx context.Context, run, kind, item string) error {
	if err := r.q.RepublishTableJob(ctx, run, kind, item, r.attempt); err != nil {
		return err
	}
	r.n++
	return nil
}
