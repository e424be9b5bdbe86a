package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/retry"
)

// Bucket names, shared by every process and by operators' nats CLI sessions.
const (
	BucketRuns  = "QFETCH_RUNS"
	BucketState = "QFETCH_STATE"
	BucketLocks = "QFETCH_LOCKS"
	BucketFleet = "QFETCH_FLEET"
	// BucketStatusLock holds the status writer's lock alone. Lock buckets
	// must allow roll-ups (their TTL markers need them) and NATS
	// permissions cannot refuse a "Nats-Rollup: all" header, so whoever
	// may write one key of a lock bucket may empty it: the workers and the
	// exporter write here, and so cannot touch the planner lock.
	BucketStatusLock = "QFETCH_STATUS_LOCK"

	// StatusWriterLock is the lock of the process that writes status.json;
	// it lives in BucketStatusLock, every other lock in BucketLocks.
	StatusWriterLock = "status-writer"

	runsHistory  = 5
	stateHistory = jetstream.KeyValueMaxHistory // the watermark's audit trail
	// markerTTL is how long an expired lock leaves its delete marker; per-key
	// TTLs need limit markers on the bucket.
	markerTTL = time.Minute
)

// Config is what an operator may tune.
type Config struct {
	// Replicas is the replica count of every bucket: 1 on a single server,
	// 3 in a cluster (QFETCH_NATS_STREAM_REPLICAS, as for the streams).
	// Default 1.
	Replicas int
	// KeepBuckets binds to the buckets as they are, creating none: set by
	// processes that do not own the buckets' settings (workers, the
	// exporter; the planner's NATS user alone may create or update them).
	// A missing bucket is a retryable error wrapping msg.ErrNotSetUp.
	KeepBuckets bool
}

func (c Config) withDefaults() Config {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	return c
}

func (c Config) validate() error {
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("bucket replicas must be between 1 and 5, got %d", c.Replicas)
	}
	return nil
}

// Ledger is the run ledger's buckets. It is safe for concurrent use.
type Ledger struct {
	js    jetstream.JetStream
	runs  jetstream.KeyValue
	state jetstream.KeyValue
	locks jetstream.KeyValue
	// fleet is nil when Open finds no QFETCH_FLEET: a deployment set up
	// by a version before it, whose operator commands still work (see
	// [Ledger.Fleet]).
	fleet jetstream.KeyValue
	// statusLock is nil when Open finds no QFETCH_STATUS_LOCK (set up by a
	// version before it): taking the status writer's lock then fails with
	// [msg.ErrNotSetUp] until a planner creates the bucket.
	statusLock jetstream.KeyValue
}

// Setup creates the ledger's buckets, or brings existing ones to cfg (every
// bucket setting qfetch uses is safe to change). Several processes may call
// it at once.
func Setup(ctx context.Context, js jetstream.JetStream, cfg Config) (*Ledger, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, failure.Permanent(fmt.Errorf("ledger: invalid config: %w", err))
	}
	// A server without JetStream leaves a stream create unanswered; the
	// account's info is answered "not enabled", which says what is wrong
	// and is not asked again (what CreateKeyValue asked first).
	if !cfg.KeepBuckets {
		if _, err := js.AccountInfo(ctx); err != nil {
			return nil, msg.ClassifyAPI(fmt.Errorf("ledger: JetStream account info: %w", err))
		}
	}
	l := &Ledger{js: js}
	var err error
	for i, dst := range l.buckets() {
		if *dst, err = ensureBucket(ctx, js, wanted(cfg)[i], cfg.KeepBuckets); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// keepsRollups reports whether bucket keeps roll-ups: the locks bucket
// does (its delete markers need them), and so does the fleet bucket (an
// operator resets the fleet by purging its key); the run records and the
// watermark, whose keys qfetch never purges, do not (see bucketStream).
func keepsRollups(bucket string) bool { return bucket != BucketRuns && bucket != BucketState }

// Open binds to the buckets a planner or worker set up, creating and
// changing nothing: what operator commands use. A missing bucket is an
// error wrapping [msg.ErrNotSetUp], except QFETCH_FLEET: a deployment set
// up by a version before it has none until its first new planner or
// worker, and reading runs needs none; the fleet's methods fail with
// [msg.ErrNotSetUp] meanwhile. The same holds for QFETCH_STATUS_LOCK.
func Open(ctx context.Context, js jetstream.JetStream) (*Ledger, error) {
	l := &Ledger{js: js}
	var err error
	for i, dst := range l.buckets() {
		name := wanted(Config{})[i].Bucket
		*dst, err = js.KeyValue(ctx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			if name == BucketFleet || name == BucketStatusLock {
				*dst = nil
				continue
			}
			return nil, failure.FleetWide(fmt.Errorf("ledger: bucket %s: %w (%w)", name, msg.ErrNotSetUp, err))
		}
		if err != nil {
			return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", name, err))
		}
		*dst = newRebinding(js, *dst)
	}
	return l, nil
}

// buckets are where Setup and Open put the buckets, in the order of wanted.
func (l *Ledger) buckets() [5]*jetstream.KeyValue {
	return [5]*jetstream.KeyValue{&l.runs, &l.state, &l.locks, &l.fleet, &l.statusLock}
}

// wanted are the buckets qfetch wants for cfg: runs, state, locks, fleet,
// the status writer's lock.
func wanted(cfg Config) [5]jetstream.KeyValueConfig {
	return [5]jetstream.KeyValueConfig{{
		Bucket:      BucketRuns,
		Description: "qfetch: run records, batch results and splits",
		History:     runsHistory,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}, {
		Bucket:      BucketState,
		Description: "qfetch: the watermark, with its history",
		History:     stateHistory,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}, {
		// Locks have a bucket of their own: a per-key TTL works only
		// with limit markers, and the server raises every TTL to the
		// marker TTL (1 minute at least here) unless the bucket keeps
		// a single revision per key. A bucket-wide TTL would not do
		// either: it would expire the watermark.
		Bucket:         BucketLocks,
		Description:    "qfetch: locks, each key with its own TTL",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       cfg.Replicas,
		LimitMarkerTTL: markerTTL,
	}, {
		// One revision per key: pods follow the fleet key with a watch,
		// which delivers every update as it is written, and each write
		// is a compare-and-set on the latest revision alone.
		Bucket:      BucketFleet,
		Description: "qfetch: the fleet's pause, hold, failure streak and probe lease",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}, {
		// The locks bucket's settings, for the one lock the workers and
		// the exporter take (see BucketStatusLock).
		Bucket:         BucketStatusLock,
		Description:    "qfetch: the status writer's lock, with its TTL",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       cfg.Replicas,
		LimitMarkerTTL: markerTTL,
	}}
}

// ensureBucket creates a KV bucket or brings an existing one to cfg, in
// one request with its final settings (bucketStream), and binds to it; with
// keep it binds to it as it is (see Config.KeepBuckets).
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig, keep bool) (jetstream.KeyValue, error) {
	if keep {
		return bindBucket(ctx, js, cfg)
	}
	want := bucketStream(cfg)
	_, err := js.CreateStream(ctx, want)
	exists := errors.Is(err, jetstream.ErrStreamNameAlreadyInUse)
	if err != nil && !exists {
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: create bucket %s: %w", cfg.Bucket, err))
	}
	s, err := awaitStream(ctx, js, want.Name)
	if err != nil {
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", cfg.Bucket, err))
	}
	if have := s.CachedInfo().Config; exists && !settled(have, cfg) {
		if err := bucketCompatible(have, cfg); err != nil {
			return nil, err
		}
		if _, err := js.UpdateStream(ctx, want); err != nil {
			// No answer is what it is (a set-up asks again); an answer
			// that refuses the change means the bucket is not one qfetch
			// can bring to its settings.
			if msg.Unanswered(err) {
				return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: bringing it to qfetch's settings: %w", cfg.Bucket, err))
			}
			return nil, failure.FleetWide(fmt.Errorf("%w: bucket %s exists and cannot be brought to qfetch's settings: %w",
				msg.ErrIncompatible, cfg.Bucket, err))
		}
	}
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err != nil {
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", cfg.Bucket, err))
	}
	return newRebinding(js, kv), nil
}

// awaitStream reads stream, waiting for a few seconds at most while it is
// not there. On a cluster, a create answered while another planner's
// identical create is still being placed can come before the stream is,
// and the next read of it finds none (10059); any other error is returned
// at once.
func awaitStream(ctx context.Context, js jetstream.JetStream, stream string) (jetstream.Stream, error) {
	const tries = 12 // ≈ 6 s in all, doubling from 50 ms to 1 s
	for n := 1; ; n++ {
		s, err := js.Stream(ctx, stream)
		if !errors.Is(err, jetstream.ErrStreamNotFound) || n == tries {
			return s, err
		}
		t := time.NewTimer(retry.Backoff(n, 50*time.Millisecond, time.Second))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, context.Cause(ctx)
		}
	}
}

// Inspect compares the ledger's buckets on the server with what cfg asks
// for, changing nothing: one finding per bucket, for `qfetch check` beside
// [msg.Inspect]'s.
func Inspect(ctx context.Context, js jetstream.JetStream, cfg Config) ([]msg.Finding, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, failure.Permanent(fmt.Errorf("ledger: invalid config: %w", err))
	}
	var out []msg.Finding
	for _, want := range wanted(cfg) {
		f := msg.Finding{Object: "bucket " + want.Bucket}
		kv, err := js.KeyValue(ctx, want.Bucket)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			f.Problem = "missing; the first planner creates it (workers and the exporter wait for it)"
		case err != nil:
			return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", want.Bucket, err))
		default:
			st, err := kv.Status(ctx)
			if err != nil {
				return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", want.Bucket, err))
			}
			bs, ok := st.(*jetstream.KeyValueBucketStatus)
			if ok {
				if err := bucketCompatible(bs.StreamInfo().Config, want); err != nil {
					f.Problem, f.Fatal = err.Error(), true
					break
				}
			}
			switch {
			case st.History() != int64(want.History):
				f.Problem = fmt.Sprintf("keeps %d revisions per key, qfetch wants %d; the next planner updates it", st.History(), want.History)
			case ok && !settled(bs.StreamInfo().Config, want):
				f.Problem = "its settings differ from qfetch's (nats stream info KV_" + want.Bucket + "); the next planner brings them back"
			}
		}
		out = append(out, f)
	}
	return out, nil
}
