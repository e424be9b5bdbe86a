package msg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// ErrNotSetUp is wrapped by [Open] (and ledger.Open) when qfetch's streams or buckets are not
// on this server: no planner or worker has run against it yet, or it is the
// wrong server or account.
var ErrNotSetUp = errors.New("qfetch's JetStream objects are not set up here")

// Open binds to the streams and consumer a planner or worker set up,
// creating and changing nothing: what operator commands use, so that
// looking never alters the fleet's settings. The Config it reports is read
// from the consumer.
func Open(ctx context.Context, js jetstream.JetStream) (*Queue, error) {
	q := &Queue{js: js}
	missing := func(what string, err error) error {
		return failure.FleetWide(fmt.Errorf("msg: %s: %w (%w)", what, ErrNotSetUp, err))
	}
	for _, name := range []string{StreamBatches, StreamDLQ} {
		if _, err := js.Stream(ctx, name); errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, missing("stream "+name, err)
		} else if err != nil {
			return nil, ClassifyAPI(fmt.Errorf("msg: stream %s: %w", name, err))
		}
	}
	var err error
	q.consumer, err = js.Consumer(ctx, StreamBatches, ConsumerWorkers)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, missing("consumer "+ConsumerWorkers, err)
	}
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
	}
	cc := q.consumer.CachedInfo().Config
	q.cfg = Config{MaxInFlight: cc.MaxAckPending, AckWait: cc.AckWait}.withDefaults()
	return q, nil
}

// Finding is one result of [Inspect]: an object and what is wrong with it
// ("" when nothing).
type Finding struct {
	Object string
	// Problem is empty when the object is as qfetch wants it.
	Problem string
	// Fatal problems stop planners and workers ([ErrIncompatible]); the
	// others are put right by the next planner (streams, buckets) or worker
	// (the consumer) to start.
	Fatal bool
}

// Inspect compares the streams and the consumer on the server with what cfg
// asks for, changing nothing (ledger.Inspect does the buckets). An error means the server could not be asked; a
// finding per object says how it compares.
func Inspect(ctx context.Context, js jetstream.JetStream, cfg Config) ([]Finding, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, failure.Permanent(fmt.Errorf("msg: invalid config: %w", err))
	}
	w := wanted(cfg)
	var out []Finding
	for _, want := range []jetstream.StreamConfig{w.batches, w.dlq} {
		f := Finding{Object: "stream " + want.Name}
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			f.Problem = "missing; the first planner creates it (workers and the exporter wait for it)"
		case err != nil:
			return nil, ClassifyAPI(fmt.Errorf("msg: stream %s: %w", want.Name, err))
		default:
			have := s.CachedInfo().Config
			if err := streamCompatible(have, want); err != nil {
				f.Problem, f.Fatal = err.Error(), true
			} else if !streamTunablesEqual(have, tuned(have, want)) {
				f.Problem = "settings differ from this configuration (subjects, schedules, replicas, duplicate window, size, count or age limits); the next planner updates them"
			} else if want.Name == StreamDLQ {
				// Full: no batch can be dead-lettered, and the fleet pauses.
				if err := (&Queue{js: js}).CheckDeadLetters(ctx); errors.Is(err, ErrDeadLettersBroken) {
					f.Problem = err.Error()
				}
			}
		}
		out = append(out, f)
	}
	f := Finding{Object: "consumer " + ConsumerWorkers}
	c, err := js.Consumer(ctx, StreamBatches, ConsumerWorkers)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		f.Problem = "missing; the first worker creates it"
	case errors.Is(err, jetstream.ErrNotPullConsumer):
		f.Problem, f.Fatal = badConsumer(w.consumer, "mode", "push", "pull").Error(), true
	case err != nil:
		return nil, ClassifyAPI(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
	default:
		have := c.CachedInfo().Config
		switch err := consumerCompatible(have, w.consumer); {
		case err != nil:
			f.Problem, f.Fatal = err.Error(), true
		case have.MaxAckPending != w.consumer.MaxAckPending:
			f.Problem = fmt.Sprintf("MaxAckPending (the fleet's cap on calls in flight) is %d, QFETCH_MAX_IN_FLIGHT here is %d; workers set it at their next start",
				have.MaxAckPending, w.consumer.MaxAckPending)
		case have.AckWait != w.consumer.AckWait:
			f.Problem = fmt.Sprintf("AckWait is %s, this configuration says %s; workers set it at their next start", have.AckWait, w.consumer.AckWait)
		}
	}
	return append(out, f), nil
}

// tuned is have with the settings Setup brings to want. have must pass
// streamCompatible: its subjects are a subset of want's.
func tuned(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	upd := have
	upd.Description = want.Description
	upd.Duplicates = want.Duplicates
	upd.MaxMsgSize = want.MaxMsgSize
	upd.Replicas = want.Replicas
	upd.Discard = want.Discard
	upd.MaxAge = want.MaxAge
	upd.Subjects = slices.Clone(want.Subjects)
	// The server never turns schedules off again.
	upd.AllowMsgSchedules = have.AllowMsgSchedules || want.AllowMsgSchedules
	if want.AllowRollup {
		upd.AllowRollup, upd.DenyPurge = true, false
	}
	if want.Discard == jetstream.DiscardOld {
		// Discard old honours a limit by dropping the oldest messages: on
		// the work queue, batches still to fetch (I1).
		upd.MaxMsgs, upd.MaxBytes, upd.MaxMsgsPerSubject = want.MaxMsgs, want.MaxBytes, want.MaxMsgsPerSubject
	}
	return upd
}

// QueueState is what the work queue holds now.
type QueueState struct {
	// Queued batches wait for a worker (including Nak'ed ones whose delay
	// has passed); InFlight are delivered and not yet acknowledged (being
	// fetched, or waiting out a NakWithDelay); MaxInFlight is the fleet cap.
	Queued      uint64
	InFlight    int
	MaxInFlight int
	// Waiting batches wait out a retry as a schedule ([Queue.Retry]): they
	// hold no slot and are in neither Queued nor InFlight until it fires.
	Waiting uint64
	// DeadLetters is the number of records in QFETCH_DLQ.
	DeadLetters uint64
	At          time.Time
}

// State reads the consumer's and the streams' counters.
func (q *Queue) State(ctx context.Context) (QueueState, error) {
	var st QueueState
	c, err := q.workers(ctx)
	switch {
	case errors.Is(err, ErrNotSetUp):
		// No worker has started yet (only workers create the consumer):
		// every batch in the stream is queued, none in flight, no cap set.
		counts, err := q.subjectCounts(ctx, StreamBatches, batchSubjects)
		if err != nil {
			return QueueState{}, ClassifyAPI(fmt.Errorf("msg: queued batches: %w", err))
		}
		for _, n := range counts {
			st.Queued += n
		}
		st.At = time.Now().UTC()
	case err != nil:
		return QueueState{}, err
	default:
		ci, err := c.Info(ctx)
		if err != nil {
			return QueueState{}, ClassifyAPI(fmt.Errorf("msg: consumer %s: %w", ConsumerWorkers, err))
		}
		st = QueueState{Queued: ci.NumPending, InFlight: ci.NumAckPending, MaxInFlight: ci.Config.MaxAckPending, At: ci.TimeStamp}
	}
	dls, err := q.DeadLetterCount(ctx, "")
	if err != nil {
		return QueueState{}, err
	}
	waiting, err := q.Waiting(ctx, "")
	if err != nil {
		return QueueState{}, err
	}
	st.Waiting, st.DeadLetters = waiting, uint64(dls)
	return st, nil
}
