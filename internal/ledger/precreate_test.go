package ledger

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// A bucket pre-created by someone other than the planner (#17: before only
// the planner's credential could create buckets) with its own subjects,
// retention or storage is refused with an error naming the setting,
// fleet-wide (exit code 3); one that differs only in tunable settings is
// brought to qfetch's.
func TestSetupRefusesAPreCreatedBucket(t *testing.T) {
	t.Parallel()
	kvStream := func(c func(*jetstream.StreamConfig)) jetstream.StreamConfig {
		sc := jetstream.StreamConfig{Name: "KV_" + BucketState, Subjects: []string{"$KV." + BucketState + ".>"},
			Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, MaxMsgsPerSubject: 1,
			AllowRollup: true, DenyDelete: true, AllowDirect: true, Discard: jetstream.DiscardNew}
		c(&sc)
		return sc
	}
	tests := []struct {
		name   string
		stream jetstream.StreamConfig
		want   string // "" when the planner reconciles it
	}{
		{"another subject", kvStream(func(c *jetstream.StreamConfig) {
			c.Subjects = append(c.Subjects, "evil.>")
		}), "subjects"},
		{"work-queue retention", kvStream(func(c *jetstream.StreamConfig) { c.Retention = jetstream.WorkQueuePolicy }), "retention"},
		{"memory storage", kvStream(func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }), "storage"},
		{"republished", kvStream(func(c *jetstream.StreamConfig) {
			c.RePublish = &jetstream.RePublish{Source: ">", Destination: "evil.>"}
		}), "republish"},
		{"a max age that expires the watermark", kvStream(func(c *jetstream.StreamConfig) { c.MaxAge = time.Minute }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if _, err := e.JS.CreateStream(e.Ctx, tt.stream); err != nil {
				t.Fatal(err)
			}
			_, err := Setup(e.Ctx, e.JS, Config{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Setup: %v", err)
				}
				s, _ := e.JS.Stream(e.Ctx, "KV_"+BucketState)
				if c := s.CachedInfo().Config; c.MaxAge != 0 || c.MaxMsgsPerSubject != stateHistory {
					t.Errorf("not reconciled: max age %s, history %d", c.MaxAge, c.MaxMsgsPerSubject)
				}
				return
			}
			if !errors.Is(err, msg.ErrIncompatible) || failure.ClassOf(err) != failure.ClassFleetWide ||
				!strings.Contains(err.Error(), "bucket "+BucketState+" exists with "+tt.want) {
				t.Fatalf("Setup: %v (class %v); want a fleet-wide refusal naming %q", err, failure.ClassOf(err), tt.want)
			}
			// `qfetch check` says so.
			findings, err := Inspect(e.Ctx, e.JS, Config{})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range findings {
				if f.Object == "bucket "+BucketState && (!f.Fatal || !strings.Contains(f.Problem, tt.want)) {
					t.Errorf("Inspect: %+v, want a fatal finding naming %q", f, tt.want)
				}
			}
			// Nor does a keeping process (a worker) use it.
			if _, err := Setup(e.Ctx, e.JS, Config{KeepBuckets: true}); !errors.Is(err, msg.ErrIncompatible) {
				t.Errorf("keeping Setup: %v, want %v", err, msg.ErrIncompatible)
			}
		})
	}
}

// A keeping process (a worker, the exporter) creates no bucket: before a
// planner has set up it is told to wait (retryable), then it binds.
func TestKeepBucketsCreatesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := Setup(e.Ctx, e.JS, Config{KeepBuckets: true})
	if !errors.Is(err, msg.ErrNotSetUp) || failure.ClassOf(err) != failure.ClassRetryable {
		t.Fatalf("keeping Setup before any planner: %v (class %v), want a retryable %v", err, failure.ClassOf(err), msg.ErrNotSetUp)
	}
	for _, b := range []string{BucketRuns, BucketState, BucketLocks, BucketFleet} {
		if _, err := e.JS.KeyValue(e.Ctx, b); !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("keeping Setup created bucket %s (lookup: %v)", b, err)
		}
	}
	if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{KeepBuckets: true}); err != nil {
		t.Fatalf("keeping Setup once the planner set up: %v", err)
	}
}
