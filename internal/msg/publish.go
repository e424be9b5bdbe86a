package msg

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// PublisherOptions tune a [Publisher]; zero fields take the defaults.
type PublisherOptions struct {
	// Window is the most publishes awaiting their ack at once. Default 64.
	Window int
	// Attempts is how many times one batch is tried before the publisher
	// gives up on the run. Default 5.
	Attempts int
	// AttemptTimeout bounds the wait for one ack. Default 10s.
	AttemptTimeout time.Duration
}

// PublishStats counts acknowledged publishes.
type PublishStats struct {
	// Published counts batches the stream stored on this publisher's behalf.
	Published int64
	// Duplicates counts batches the stream already held (same Msg-Id inside
	// the duplicate window), e.g. after a planner restart.
	Duplicates int64
}

// Publisher publishes batches with a bounded number awaiting their ack.
//
// Each publish runs in its own goroutine (at most Window at a time) and waits
// for its ack with a deadline, so a lost ack is retried under the same
// Msg-Id rather than forgotten; the stream's duplicate window makes the retry
// harmless. The first batch that cannot be published is reported by every
// later Publish and by Wait: a run is never silently short.
type Publisher struct {
	js     jetstream.JetStream
	maxMsg int
	opts   PublisherOptions
	slots  chan struct{}

	mu  sync.Mutex
	err error

	published, duplicates atomic.Int64
}

// Publisher returns a new publisher on q's batch stream.
func (q *Queue) Publisher(opts PublisherOptions) *Publisher {
	if opts.Window <= 0 {
		opts.Window = 64
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.AttemptTimeout <= 0 {
		opts.AttemptTimeout = 10 * time.Second
	}
	return &Publisher{
		js:     q.js,
		maxMsg: min(int(q.cfg.MaxMsgSize), MaxBatchBytes),
		opts:   opts,
		slots:  make(chan struct{}, opts.Window),
	}
}

// Publish queues b for publishing and returns once a window slot is free. It
// returns an error, without publishing, when b is invalid or too large
// (permanent), when ctx ends, or when an earlier batch failed (that batch's
// error). The publish itself continues under ctx after Publish returns; call
// [Publisher.Wait] to learn its outcome.
func (p *Publisher) Publish(ctx context.Context, b Batch) error {
	data, err := Encode(b)
	if err != nil {
		return err
	}
	if len(data) > p.maxMsg {
		// Refused, not split: the run's batch count and numbering are the
		// ledger's, and only a worker's split (recorded first) may change them.
		return failure.Permanent(fmt.Errorf("%w: batch %s is %d bytes, a batch message takes at most %d; "+
			"lower the batch size (QFETCH_BATCH_SIZE) or the detection parameters",
			ErrBadBatch, b.MsgID(), len(data), p.maxMsg))
	}
	if err := p.Err(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	m := &nats.Msg{Subject: b.Subject(), Data: data, Header: nats.Header{}}
	id := b.MsgID()
	go func() {
		defer func() { <-p.slots }()
		if err := p.publish(ctx, m, id); err != nil {
			p.fail(err)
		}
	}()
	return nil
}

// Wait returns once every queued publish has its ack, with the first error
// any of them met. If ctx ends first it returns ctx's error; publishes still
// outstanding then end with their own context.
func (p *Publisher) Wait(ctx context.Context) error {
	// Holding every slot means no publish is outstanding.
	for i := range cap(p.slots) {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			for range i {
				<-p.slots
			}
			return context.Cause(ctx)
		}
	}
	for range cap(p.slots) {
		<-p.slots
	}
	return p.Err()
}

// Err returns the first publish failure, if any.
func (p *Publisher) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stats returns counts of acknowledged publishes so far.
func (p *Publisher) Stats() PublishStats {
	return PublishStats{Published: p.published.Load(), Duplicates: p.duplicates.Load()}
}

func (p *Publisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

func (p *Publisher) publish(ctx context.Context, m *nats.Msg, id string) error {
	var last error
	for attempt := 1; attempt <= p.opts.Attempts; attempt++ {
		if attempt > 1 {
			t := time.NewTimer(publishDelay(attempt - 1))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("msg: publish %s: %w (last error: %v)", id, context.Cause(ctx), last)
			}
		}
		actx, cancel := context.WithTimeout(ctx, p.opts.AttemptTimeout)
		ack, err := p.js.PublishMsg(actx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamBatches))
		cancel()
		if err == nil {
			if ack.Duplicate {
				p.duplicates.Add(1)
			} else {
				p.published.Add(1)
			}
			return nil
		}
		last = err
		if ctx.Err() != nil {
			return fmt.Errorf("msg: publish %s: %w", id, context.Cause(ctx))
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum {
			return failure.Permanent(fmt.Errorf("msg: publish %s: %w", id, err))
		}
	}
	// A stream without a leader (a cluster without quorum) answers no
	// publish: see Confirm.
	return Confirm(ctx, p.js, failure.Retryable(fmt.Errorf("msg: publish %s: gave up after %d attempts: %w", id, p.opts.Attempts, last)))
}

// publishDelay is the pause before retry n (from 1): 100ms doubling to a 3.2s
// cap, with ±20% jitter so that restarted planners do not retry in step.
func publishDelay(n int) time.Duration {
	d := 100 * time.Millisecond << min(max(n-1, 0), 5)
	jitter := time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	return d + jitter
}
