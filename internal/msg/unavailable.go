package msg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// ErrJetStreamUnavailable is wrapped, classified fleet-wide, by the errors
// of JetStream requests that a cluster which lost its quorum (two servers
// of three down), or has no leader for the stream, cannot serve: every
// process meets it alike, no batch is to blame, and it ends by itself once
// the servers are back (or a leader is elected).
var ErrJetStreamUnavailable = errors.New("JetStream unavailable (no quorum or no leader: are servers of the cluster down?)")

// codeClusterNotAvailable is the server's JSClusterNotAvailErr: "JetStream
// system temporarily unavailable", what a server without a meta leader
// answers the JetStream API.
const codeClusterNotAvailable jetstream.ErrorCode = 10008

// codeNoPeers is the server's JSClusterNoPeersErrF, "no suitable peers for
// placement": a cluster asked for a stream or bucket on more servers than
// it counts up, a server being down or, just after a start, not yet heard
// from by the meta leader.
const codeNoPeers jetstream.ErrorCode = 10005

// NoPeers reports whether err is JetStream answering that it has too few
// servers up to place a stream or bucket at its replicas: a server back
// (or first heard from) mends it, so an idempotent set-up may ask again
// for a while; a cluster smaller than the replicas never will.
func NoPeers(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == codeNoPeers
}

// availableWait bounds the question [Available] asks.
const availableWait = 2 * time.Second

// unavailable wraps err as a JetStream-unavailable fault.
func unavailable(err error) error {
	return failure.FleetWide(fmt.Errorf("%w: %w", ErrJetStreamUnavailable, err))
}

// unavailableAnswer reports an answer that says in so many words that the
// cluster cannot serve now.
func unavailableAnswer(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && api.ErrorCode == codeClusterNotAvailable
}

// unanswered reports a request that got no answer at all: nobody listens
// (a stream, consumer or ack subject without a leader answers with no
// responders; a publish to such a stream with "no response from stream"),
// or nobody answered in time (a KV write or a stream request waits for a
// leader that is not there). A missing stream or consumer gives some of
// these too, and a loaded server the timeouts: only [Confirm] tells.
func unanswered(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// Unanswered reports whether err is a JetStream request that got no
// answer: JetStream unavailable ([ErrJetStreamUnavailable]), or no
// responder or no reply in time, which a leader election gives too. A
// caller that may repeat the request (an idempotent set-up) asks again.
func Unanswered(err error) bool {
	return errors.Is(err, ErrJetStreamUnavailable) || unanswered(err)
}

// Available asks JetStream the smallest question there is (the account's
// info, which the cluster's meta leader answers): nil when it answers; an
// error wrapping [ErrJetStreamUnavailable] (fleet-wide) when, connected, it
// answers that it is unavailable or does not answer in time; otherwise the
// error, classified by [ClassifyAPI] (not connected: retryable, since the
// client reconnects by itself).
func Available(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, availableWait)
	defer cancel()
	_, err := js.AccountInfo(ctx)
	switch {
	case err == nil:
		return nil
	case unavailableAnswer(err):
		return unavailable(fmt.Errorf("msg: JetStream account info: %w", err))
	case unanswered(err) && connected(js) && !errors.Is(context.Cause(ctx), context.Canceled):
		return unavailable(fmt.Errorf("msg: JetStream account info: %w", err))
	}
	return ClassifyAPI(fmt.Errorf("msg: JetStream account info: %w", err))
}

// Confirm turns err, from a JetStream request, into a JetStream-unavailable
// fault when that is what it was: a request that got no answer (see
// unanswered) while the connection is up, and JetStream then answers
// [Available] no either. Anything else is returned as it is: a missing
// stream (which JetStream, answering, reports as such), a timeout of a
// JetStream that answers the next question, a connection that is down (the
// client reconnects by itself).
func Confirm(ctx context.Context, js jetstream.JetStream, err error) error {
	if err == nil || errors.Is(err, ErrJetStreamUnavailable) || !unanswered(err) || !connected(js) {
		return err
	}
	// The caller's context may be what ran out: ask on a fresh one.
	aerr := Available(context.WithoutCancel(ctx), js)
	if !errors.Is(aerr, ErrJetStreamUnavailable) {
		return err
	}
	return failure.FleetWide(fmt.Errorf("%w: %w (asked again: %v)", ErrJetStreamUnavailable, err, aerr))
}

func connected(js jetstream.JetStream) bool {
	nc := js.Conn()
	return nc != nil && nc.IsConnected()
}

// Available asks whether the queue's JetStream serves the workers: the
// workers consumer's info, which the consumer's leader answers (it steps
// down seconds before the meta leader does when the quorum goes, and is
// elected after it when the quorum comes back). Errors as [Available].
func (q *Queue) Available(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, availableWait)
	defer cancel()
	c, err := q.workers(ctx)
	if err == nil {
		_, err = c.Info(ctx)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrJetStreamUnavailable):
		return err
	case unavailableAnswer(err):
		return unavailable(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
	case unanswered(err) && connected(q.js) && !errors.Is(context.Cause(ctx), context.Canceled):
		return unavailable(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
	}
	return ClassifyAPI(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
}

// Confirm is [Confirm] on the queue's connection, for callers with a
// failure of their own (a pass, a command) that may come from JetStream: it
// asks both the meta leader ([Available]) and the workers consumer's
// leader ([Queue.Available]), since either may notice a lost quorum first.
// A write meets a lost quorum at once, while the leaders notice it only
// seconds later (raft's election timeouts): while they still answer,
// Confirm asks again, every half second for up to confirmSettle, before it
// returns err as it is.
func (q *Queue) Confirm(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrJetStreamUnavailable) || !unanswered(err) {
		return err
	}
	deadline := time.Now().Add(confirmSettle)
	for {
		if connected(q.js) {
			if cerr := Confirm(ctx, q.js, err); errors.Is(cerr, ErrJetStreamUnavailable) {
				return cerr
			}
			if cerr := q.confirm(ctx, err); errors.Is(cerr, ErrJetStreamUnavailable) {
				return cerr
			}
		}
		if time.Now().After(deadline) {
			return err
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// confirmSettle is how long [Queue.Confirm] waits for JetStream's leaders
// to notice a lost quorum: a few of raft's election timeouts.
const confirmSettle = 20 * time.Second

// confirm is [Confirm] for the queue's own requests, asking [Queue.Available].
func (q *Queue) confirm(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrJetStreamUnavailable) || !unanswered(err) || !connected(q.js) {
		return err
	}
	aerr := q.Available(context.WithoutCancel(ctx))
	if !errors.Is(aerr, ErrJetStreamUnavailable) {
		return err
	}
	return failure.FleetWide(fmt.Errorf("%w: %w (asked again: %v)", ErrJetStreamUnavailable, err, aerr))
}
