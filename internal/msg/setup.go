package msg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// Names shared by every process and by operators' nats CLI sessions.
const (
	StreamBatches   = "QFETCH_BATCHES"
	StreamDLQ       = "QFETCH_DLQ"
	ConsumerWorkers = "workers"

	batchSubjectPrefix = "qfetch.batch."
	retrySubjectPrefix = "qfetch.retry."
	dlqSubjectPrefix   = "qfetch.dlq."
	batchSubjects      = batchSubjectPrefix + ">"
	retrySubjects      = retrySubjectPrefix + ">"
	queueSubjects      = "qfetch.>" // in QFETCH_BATCHES: batches and retries
	dlqSubjects        = dlqSubjectPrefix + ">"

	// dlqDuplicateWindow covers a worker that dead-letters, dies before Term,
	// and dead-letters the redelivery again.
	dlqDuplicateWindow = time.Hour
)

// ErrIncompatible is wrapped by Setup (and ledger.Setup) when a stream,
// bucket or consumer exists with settings this version cannot use.
var ErrIncompatible = errors.New("incompatible JetStream object")

// Queue is the streams and the consumer qfetch's batches travel by, created
// or checked by [Setup]. It is safe for concurrent use.
type Queue struct {
	js  jetstream.JetStream
	cfg Config

	mu       sync.Mutex
	consumer jetstream.Consumer // nil until bound: see workers
}

// Config returns the configuration in force, defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// Setup creates the streams and the consumer, or checks and adopts them
// when they exist. Several processes may call it at once.
//
// Settings that only tune behaviour are brought to cfg when they differ: the
// duplicate window, max message size, replicas, discard policy and max age of
// the streams, and the consumer's
// MaxAckPending, AckWait and MaxDeliver (so that changing
// QFETCH_MAX_IN_FLIGHT takes effect at the next start). Settings that change
// what a stream or consumer means (retention, storage, a subject to remove,
// ack and deliver policy, filter, push vs pull) are never changed: Setup fails with
// an error wrapping [ErrIncompatible] that names the setting, classified
// fleet-wide, and the operator decides what happens to the messages inside.
//
// The batch stream holds no limit at all (age, messages, bytes, per subject):
// it discards old messages, as message schedules require, so any limit would
// drop queued batches (I1). Setup takes back a limit an operator set rather
// than refuse to start, as it does for the age: removing a limit loses
// nothing, and a refusal would stop the fleet while the limit stayed in
// force. A stream of an earlier version (one subject, discard new, no
// schedules) is upgraded in place with its queued batches: subjects may be
// added, never removed. The upgrade is one-way: the server never disables
// schedules again, and an earlier version refuses the two-subject stream.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) (*Queue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, failure.Permanent(fmt.Errorf("msg: invalid config: %w", err))
	}
	q := &Queue{js: js, cfg: cfg}
	w := wanted(cfg)
	for _, sc := range []jetstream.StreamConfig{w.batches, w.dlq} {
		if err := ensureStream(ctx, js, sc, cfg.KeepStreams); err != nil {
			return nil, err
		}
	}
	if cfg.AdoptConsumer {
		c, err := bindConsumer(ctx, js)
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
		q.consumer = c
		return q, nil
	}
	var err error
	if q.consumer, err = ensureConsumer(ctx, js, w.consumer); err != nil {
		return nil, err
	}
	return q, nil
}

// bindConsumer binds to the workers consumer and checks it compatible.
func bindConsumer(ctx context.Context, js jetstream.JetStream) (jetstream.Consumer, error) {
	c, err := js.Consumer(ctx, StreamBatches, ConsumerWorkers)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, err
	case errors.Is(err, jetstream.ErrNotPullConsumer):
		return nil, badConsumer(wanted(Config{}.withDefaults()).consumer, "mode", "push", "pull")
	case err != nil:
		return nil, ClassifyAPI(fmt.Errorf("msg: read consumer %s: %w", ConsumerWorkers, err))
	}
	if err := consumerCompatible(c.CachedInfo().Config, wanted(Config{}.withDefaults()).consumer); err != nil {
		return nil, err
	}
	return c, nil
}

// workers is the workers consumer, bound on first use when Setup found
// none (a planner or exporter that started before any worker).
func (q *Queue) workers(ctx context.Context) (jetstream.Consumer, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.consumer != nil {
		return q.consumer, nil
	}
	c, err := bindConsumer(ctx, q.js)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, failure.Retryable(fmt.Errorf("msg: consumer %s: %w: no worker has created it yet (%w)", ConsumerWorkers, ErrNotSetUp, err))
	}
	if err != nil {
		return nil, err
	}
	q.consumer = c
	return c, nil
}

// objects are the JetStream objects qfetch wants for a Config.
type objects struct {
	batches, dlq jetstream.StreamConfig
	consumer     jetstream.ConsumerConfig
}

func wanted(cfg Config) objects {
	return objects{
		batches: jetstream.StreamConfig{
			Name:        StreamBatches,
			Description: "qfetch: detection batches waiting for a worker",
			// Retries wait as message schedules on qfetch.retry.<run>.<key>
			// (see Queue.Retry); the consumer never reads that subject.
			Subjects:   []string{batchSubjects, retrySubjects},
			Retention:  jetstream.WorkQueuePolicy,
			Storage:    jetstream.FileStorage,
			Replicas:   cfg.StreamReplicas,
			Duplicates: cfg.DuplicateWindow,
			MaxMsgSize: cfg.MaxMsgSize,
			// The server requires discard old and roll-ups (hence purges)
			// for schedules: a schedule replaces its subject's last one.
			// Discard old would drop queued batches (I1) to honour a limit,
			// so the stream has none; Setup takes back any an operator set.
			Discard:           jetstream.DiscardOld,
			AllowMsgSchedules: true,
			AllowRollup:       true,
			DenyPurge:         false,
			MaxMsgs:           -1, // -1: the server's word for no limit
			MaxBytes:          -1,
			MaxMsgsPerSubject: -1,
		},
		dlq: jetstream.StreamConfig{
			Name:        StreamDLQ,
			Description: "qfetch: batches that cannot be fetched, with the reason",
			Subjects:    []string{dlqSubjects},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
			Duplicates:  min(dlqDuplicateWindow, durationOr(cfg.DLQMaxAge, dlqDuplicateWindow)),
			MaxAge:      cfg.DLQMaxAge,
			MaxMsgSize:  -1, // the server's word for no limit; 0 would read back as -1 and differ
			Discard:     jetstream.DiscardNew,
		},
		consumer: jetstream.ConsumerConfig{
			Durable:       ConsumerWorkers,
			Description:   "qfetch: workers share this pull consumer",
			FilterSubject: batchSubjects,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cfg.AckWait,
			MaxDeliver:    -1, // see Config.MaxFailures
			MaxAckPending: cfg.MaxInFlight,
			Replicas:      cfg.StreamReplicas,
		},
	}
}

func durationOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// ensureStream creates want or reconciles an existing stream with it; with
// keep it only checks the stream there (see Config.KeepStreams).
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, keep bool) error {
	if keep {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return failure.Retryable(fmt.Errorf("msg: stream %s: %w: waiting for a planner to create it (%w)", want.Name, ErrNotSetUp, err))
		}
		if err != nil {
			return ClassifyAPI(fmt.Errorf("msg: read stream %s: %w", want.Name, err))
		}
		return streamCompatible(s.CachedInfo().Config, want)
	}
	_, err := js.CreateStream(ctx, want)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return ClassifyAPI(fmt.Errorf("msg: create stream %s: %w", want.Name, err))
	}
	// It exists with another configuration (an identical one is accepted by
	// CreateStream as is).
	s, err := js.Stream(ctx, want.Name)
	if err != nil {
		return ClassifyAPI(fmt.Errorf("msg: read stream %s: %w", want.Name, err))
	}
	have := s.CachedInfo().Config
	if err := streamCompatible(have, want); err != nil {
		return err
	}
	upd := tuned(have, want)
	if keep || streamTunablesEqual(have, upd) {
		return nil
	}
	if _, err := js.UpdateStream(ctx, upd); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: update stream %s: %w", want.Name, err))
	}
	return nil
}

// streamCompatible names the first setting of have that qfetch may not change.
func streamCompatible(have, want jetstream.StreamConfig) error {
	bad := func(setting string, h, w any) error {
		return failure.FleetWide(fmt.Errorf("%w: stream %s exists with %s %v, qfetch needs %v; "+
			"inspect it (nats stream info %s) and remove or rename it",
			ErrIncompatible, want.Name, setting, h, w, want.Name))
	}
	switch {
	case have.Retention != want.Retention:
		return bad("retention", have.Retention, want.Retention)
	case have.Storage != want.Storage:
		return bad("storage", have.Storage, want.Storage)
	case !subset(have.Subjects, want.Subjects):
		// Adding a subject (an upgrade) keeps every queued message; removing
		// one would strand those on it.
		return bad("subjects", strings.Join(have.Subjects, ","), strings.Join(want.Subjects, ","))
	case want.AllowRollup && have.DenyPurge:
		// The server never lifts deny-purge, and schedules need roll-ups.
		return bad("deny purge", true, false)
	}
	if setting, h, w, found := ForeignSetting(have); found {
		return bad(setting, h, w)
	}
	return nil
}

// ForeignSetting names the first setting of an existing stream (a queue's
// or a bucket's) that qfetch never sets and no update may put right, with
// the value found and the one qfetch needs; found is false when there is
// none. Each one carries what is stored elsewhere or freezes it, so a
// stream pre-created with one is not qfetch's: mirror or sources, republish,
// a subject transform, sealed. Both the streams' check here and the
// ledger's buckets' check use it, so the two never disagree.
func ForeignSetting(have jetstream.StreamConfig) (setting string, h, w any, found bool) {
	switch {
	case have.Mirror != nil || len(have.Sources) > 0:
		return "mirror/sources", "set", "none", true
	case have.RePublish != nil:
		// The server republishes every stored message, and another stream
		// (a bucket: the watermark) stores what arrives there: whoever may
		// publish on this stream's subjects would write into it.
		return "republish", have.RePublish.Destination, "none", true
	case have.SubjectTransform != nil:
		return "subject transform", have.SubjectTransform.Destination, "none", true
	case have.Sealed:
		return "sealed", true, false, true
	}
	return "", nil, nil, false
}

func streamTunablesEqual(a, b jetstream.StreamConfig) bool {
	return a.Description == b.Description && a.Duplicates == b.Duplicates &&
		a.MaxMsgSize == b.MaxMsgSize && a.Replicas == b.Replicas &&
		a.Discard == b.Discard && a.MaxAge == b.MaxAge &&
		sameSet(a.Subjects, b.Subjects) && a.AllowMsgSchedules == b.AllowMsgSchedules &&
		a.AllowRollup == b.AllowRollup && a.DenyPurge == b.DenyPurge &&
		a.MaxMsgs == b.MaxMsgs && a.MaxBytes == b.MaxBytes && a.MaxMsgsPerSubject == b.MaxMsgsPerSubject
}

// subset reports whether every element of a is in b.
func subset(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// ensureConsumer creates the workers consumer or reconciles an existing one.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := js.CreateConsumer(ctx, StreamBatches, want)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerExists) {
		return nil, ClassifyAPI(fmt.Errorf("msg: create consumer %s: %w", want.Durable, err))
	}
	c, err = js.Consumer(ctx, StreamBatches, want.Durable)
	if errors.Is(err, jetstream.ErrNotPullConsumer) {
		return nil, badConsumer(want, "mode", "push", "pull")
	}
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: read consumer %s: %w", want.Durable, err))
	}
	have := c.CachedInfo().Config
	if err := consumerCompatible(have, want); err != nil {
		return nil, err
	}
	upd := have
	upd.Description = want.Description
	upd.AckWait = want.AckWait
	upd.MaxDeliver = want.MaxDeliver
	upd.MaxAckPending = want.MaxAckPending
	upd.Replicas = want.Replicas
	c, err = js.UpdateConsumer(ctx, StreamBatches, upd)
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: update consumer %s: %w", want.Durable, err))
	}
	return c, nil
}

func badConsumer(want jetstream.ConsumerConfig, setting string, h, w any) error {
	return failure.FleetWide(fmt.Errorf("%w: consumer %s on %s exists with %s %v, qfetch needs %v; "+
		"remove it (nats consumer rm %s %s): queued batches stay in the stream",
		ErrIncompatible, want.Durable, StreamBatches, setting, h, w, StreamBatches, want.Durable))
}

// consumerCompatible names the first setting of have that qfetch may not
// change.
func consumerCompatible(have, want jetstream.ConsumerConfig) error {
	haveFilter := have.FilterSubject
	if len(have.FilterSubjects) > 0 {
		haveFilter = strings.Join(have.FilterSubjects, ",")
	}
	switch {
	case have.DeliverSubject != "":
		return badConsumer(want, "mode", "push", "pull")
	case have.AckPolicy != want.AckPolicy:
		return badConsumer(want, "ack policy", have.AckPolicy, want.AckPolicy)
	case have.DeliverPolicy != want.DeliverPolicy:
		return badConsumer(want, "deliver policy", have.DeliverPolicy, want.DeliverPolicy)
	case haveFilter != want.FilterSubject:
		return badConsumer(want, "filter subject", haveFilter, want.FilterSubject)
	}
	return nil
}

// ClassifyAPI marks a JetStream error for callers that must decide: an
// account without JetStream is fleet-wide; a cluster that answers it has no
// quorum ("JetStream system temporarily unavailable") is fleet-wide too,
// wrapping [ErrJetStreamUnavailable]; everything else (timeouts, no
// responders while a leader is elected) is worth retrying — [Confirm] tells
// which of those are a cluster that cannot serve.
func ClassifyAPI(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return failure.FleetWide(err)
	case errors.Is(err, ErrJetStreamUnavailable):
		return err
	case unavailableAnswer(err):
		return unavailable(err)
	}
	return failure.Retryable(err)
}
