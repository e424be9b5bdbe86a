package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// availQueue is a Queue whose Available answers what the test says; the
// watch asks nothing else.
type availQueue struct {
	Queue
	mu  sync.Mutex
	err error
}

func (q *availQueue) Available(context.Context) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

func (q *availQueue) Config() msg.Config { return msg.Config{AckWait: time.Minute} }

// TestJetStreamGateClearsOnAnAnswer: a worker held back by a quorum loss
// is let go as soon as JetStream answers again — even when the answer is
// that qfetch's consumer or stream is missing (a cluster back with its
// storage lost, the consumer deleted): the slots then pull and report that
// error, instead of the worker saying "JetStream unavailable" forever.
func TestJetStreamGateClearsOnAnAnswer(t *testing.T) {
	tests := []struct {
		name   string
		answer error
	}{
		{"serves", nil},
		{"consumer deleted", failure.Retryable(fmt.Errorf("msg: consumer workers: %w", jetstream.ErrConsumerNotFound))},
		{"consumer never made", failure.Retryable(fmt.Errorf("msg: consumer workers: %w: no worker has created it yet (%w)", msg.ErrNotSetUp, jetstream.ErrConsumerNotFound))},
		{"stream gone", failure.Retryable(fmt.Errorf("msg: consumer workers: %w", jetstream.ErrStreamNotFound))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := &availQueue{err: failure.FleetWide(fmt.Errorf("%w: no answer", msg.ErrJetStreamUnavailable))}
			w := New(Config{JetStreamCheckEvery: 50 * time.Millisecond}, Deps{Queue: q, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.watchJetStream(ctx) }()
			defer func() { cancel(); <-done }()
			testenv.EventuallyOK(t, 10*time.Second, func() error {
				if err := w.nats.fault(); !errors.Is(err, msg.ErrJetStreamUnavailable) {
					return fmt.Errorf("held back by %v while JetStream does not answer", err)
				}
				return nil
			}, "the worker held back")
			q.mu.Lock()
			q.err = tt.answer
			q.mu.Unlock()
			testenv.EventuallyOK(t, 10*time.Second, func() error {
				if err := w.nats.fault(); err != nil {
					return fmt.Errorf("held back by %v after JetStream answered %v", err, tt.answer)
				}
				return nil
			}, "the worker let go")
		})
	}
}
