package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestReview23SetupBringsBackOperatorChanges: a planner pass brings an
// existing bucket's stream back to what UpdateKeyValue sends, for every
// setting an update can put right. settled compares only the settings
// prepareKeyValueConfig sets to a non-zero value: those UpdateKeyValue
// brings back by sending them zero (no_ack, discard_new_per_subject,
// consumer_limits, metadata, ...) it never looks at, so a bucket with one
// of them changed counts as settled and is left as it is. Before settled,
// every pass's UpdateKeyValue reset them.
//
// The first two cases break the ledger outright: with no_ack the server
// stores writes without answering them (every run-record write times out,
// I6: the planner pass fails fleet-wide instead of mending it); with
// discard_new_per_subject on a one-revision bucket the second write to a
// key (a lock renewed, the fleet key's compare-and-set) is refused.
func TestReview23SetupBringsBackOperatorChanges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		bucket string
		change func(*jetstream.StreamConfig)
		wrong  func(jetstream.StreamConfig) bool
		// use, when set, is a write the change breaks; it must work
		// after the pass.
		use func(ctx context.Context, kv jetstream.KeyValue) error
	}{
		{
			name: "no_ack on the run records", bucket: BucketRuns,
			change: func(c *jetstream.StreamConfig) { c.NoAck = true },
			wrong:  func(c jetstream.StreamConfig) bool { return c.NoAck },
			use: func(ctx context.Context, kv jetstream.KeyValue) error {
				_, err := kv.Put(ctx, "review23", []byte("x"))
				return err
			},
		},
		{
			name: "discard_new_per_subject on the fleet bucket", bucket: BucketFleet,
			change: func(c *jetstream.StreamConfig) { c.DiscardNewPerSubject = true },
			wrong:  func(c jetstream.StreamConfig) bool { return c.DiscardNewPerSubject },
			use: func(ctx context.Context, kv jetstream.KeyValue) error {
				for range 2 {
					if _, err := kv.Put(ctx, "review23", []byte("x")); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			name: "discard_new_per_subject on the locks bucket", bucket: BucketLocks,
			change: func(c *jetstream.StreamConfig) { c.DiscardNewPerSubject = true },
			wrong:  func(c jetstream.StreamConfig) bool { return c.DiscardNewPerSubject },
		},
		{
			name: "consumer limits on the run records", bucket: BucketRuns,
			change: func(c *jetstream.StreamConfig) { c.ConsumerLimits.MaxAckPending = 1 },
			wrong:  func(c jetstream.StreamConfig) bool { return c.ConsumerLimits.MaxAckPending != 0 },
		},
		{
			name: "an operator's metadata on the watermark", bucket: BucketState,
			change: func(c *jetstream.StreamConfig) {
				if c.Metadata == nil {
					c.Metadata = map[string]string{}
				}
				c.Metadata["review23"] = "set by an operator"
			},
			wrong: func(c jetstream.StreamConfig) bool { _, ok := c.Metadata["review23"]; return ok },
		},
		// Settings settled does compare: these hold.
		{
			name: "history on the run records", bucket: BucketRuns,
			change: func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 2 },
			wrong:  func(c jetstream.StreamConfig) bool { return c.MaxMsgsPerSubject != runsHistory },
		},
		{
			name: "roll-ups off on the fleet bucket", bucket: BucketFleet,
			change: func(c *jetstream.StreamConfig) { c.AllowRollup = false },
			wrong:  func(c jetstream.StreamConfig) bool { return !c.AllowRollup },
		},
		{
			name: "max bytes on the watermark", bucket: BucketState,
			change: func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 20 },
			wrong:  func(c jetstream.StreamConfig) bool { return c.MaxBytes != -1 },
		},
		{
			name: "max age on the run records", bucket: BucketRuns,
			change: func(c *jetstream.StreamConfig) { c.MaxAge = time.Hour },
			wrong:  func(c jetstream.StreamConfig) bool { return c.MaxAge != 0 },
		},
		{
			name: "compression on the fleet bucket", bucket: BucketFleet,
			change: func(c *jetstream.StreamConfig) { c.Compression = jetstream.S2Compression },
			wrong:  func(c jetstream.StreamConfig) bool { return c.Compression != jetstream.NoCompression },
		},
		{
			name: "duplicates window on the locks bucket", bucket: BucketLocks,
			change: func(c *jetstream.StreamConfig) { c.Duplicates = time.Second },
			wrong:  func(c jetstream.StreamConfig) bool { return c.Duplicates != 2*time.Minute },
		},
		{
			name: "marker TTL on the status lock", bucket: BucketStatusLock,
			change: func(c *jetstream.StreamConfig) { c.SubjectDeleteMarkerTTL = 5 * time.Minute },
			wrong:  func(c jetstream.StreamConfig) bool { return c.SubjectDeleteMarkerTTL != markerTTL },
		},
		{
			name: "max value size on the fleet bucket", bucket: BucketFleet,
			change: func(c *jetstream.StreamConfig) { c.MaxMsgSize = 16 },
			wrong:  func(c jetstream.StreamConfig) bool { return c.MaxMsgSize != -1 },
		},
		{
			name: "discard old on the run records", bucket: BucketRuns,
			change: func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardOld },
			wrong:  func(c jetstream.StreamConfig) bool { return c.Discard != jetstream.DiscardNew },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, Config{})
			s, err := e.JS.Stream(e.Ctx, "KV_"+tc.bucket)
			if err != nil {
				t.Fatal(err)
			}
			c := s.CachedInfo().Config
			tc.change(&c)
			if _, err := e.JS.UpdateStream(e.Ctx, c); err != nil {
				t.Fatalf("the operator's change: %v", err)
			}
			if s, err = e.JS.Stream(e.Ctx, "KV_"+tc.bucket); err != nil || !tc.wrong(s.CachedInfo().Config) {
				t.Fatalf("the change did not take (%v): %+v", err, s.CachedInfo().Config)
			}
			if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
				t.Fatalf("the planner's pass: %v", err)
			}
			s, err = e.JS.Stream(e.Ctx, "KV_"+tc.bucket)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CachedInfo().Config; tc.wrong(got) {
				t.Errorf("KV_%s still has the operator's change after a planner pass (settled said settled): %+v", tc.bucket, got)
			}
			if tc.use != nil {
				kv, err := e.JS.KeyValue(e.Ctx, tc.bucket)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(e.Ctx, 5*time.Second)
				defer cancel()
				if err := tc.use(ctx, kv); err != nil {
					t.Errorf("a write to %s after the planner's pass: %v", tc.bucket, err)
				}
			}
		})
	}
}
