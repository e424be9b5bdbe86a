package msg

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

func TestSetupCreatesEverything(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 3, AckWait: 30 * time.Second, MaxFailures: 7})
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if sc.Retention != jetstream.WorkQueuePolicy || sc.Storage != jetstream.FileStorage ||
		sc.Duplicates != DefaultDuplicateWindow || sc.MaxMsgSize != DefaultMaxMsgSize ||
		!sameSet(sc.Subjects, []string{"qfetch.batch.>", "qfetch.retry.>"}) || sc.Discard != jetstream.DiscardOld ||
		!sc.AllowMsgSchedules || !sc.AllowRollup || sc.DenyPurge ||
		sc.MaxMsgs != -1 || sc.MaxBytes != -1 || sc.MaxMsgsPerSubject != -1 || sc.MaxAge != 0 {
		t.Errorf("batch stream config: %+v", sc)
	}
	d, err := e.JS.Stream(e.Ctx, StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if dc := d.CachedInfo().Config; dc.Retention != jetstream.LimitsPolicy || !sameSet(dc.Subjects, []string{"qfetch.dlq.>"}) {
		t.Errorf("DLQ stream config: %+v", dc)
	}
	c, err := e.JS.Consumer(e.Ctx, StreamBatches, ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if cc.MaxAckPending != 3 || cc.AckWait != 30*time.Second || cc.MaxDeliver != -1 ||
		cc.AckPolicy != jetstream.AckExplicitPolicy || cc.FilterSubject != "qfetch.batch.>" {
		t.Errorf("consumer config: %+v", cc)
	}
}

func TestSetupIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := Config{MaxInFlight: 2}
	// Several processes starting at once: one connection each.
	const procs = 4
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		js := testenv.Connect(t, e.URL)
		wg.Go(func() { _, errs[i] = Setup(e.Ctx, js, cfg) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Setup %d: %v", i, err)
		}
	}
	// And again, one after the other, with data inside.
	q, err := Setup(e.Ctx, e.JS, cfg)
	if err != nil {
		t.Fatalf("Setup after setup: %v", err)
	}
	e.q = q
	publishAll(t, e, testBatch("r1", 1))
	if _, err := Setup(e.Ctx, e.JS, cfg); err != nil {
		t.Fatalf("Setup with a batch queued: %v", err)
	}
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.CachedInfo().State.Msgs; n != 1 {
		t.Errorf("stream holds %d messages after re-setup, want 1", n)
	}
}

func TestSetupUpdatesTunables(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 2})
	cfg := Config{MaxInFlight: 5, DuplicateWindow: time.Hour, AckWait: time.Minute, MaxFailures: 9, MaxMsgSize: 4096}
	if _, err := Setup(e.Ctx, e.JS, cfg); err != nil {
		t.Fatalf("Setup with new tunables: %v", err)
	}
	c, err := e.JS.Consumer(e.Ctx, StreamBatches, ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	if cc := c.CachedInfo().Config; cc.MaxAckPending != 5 || cc.AckWait != time.Minute || cc.MaxDeliver != -1 {
		t.Errorf("consumer not updated: %+v", cc)
	}
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	if sc := s.CachedInfo().Config; sc.Duplicates != time.Hour || sc.MaxMsgSize != 4096 {
		t.Errorf("stream not updated: duplicates %s, max msg size %d", sc.Duplicates, sc.MaxMsgSize)
	}
}

func TestSetupRefusesIncompatible(t *testing.T) {
	t.Parallel()
	base := jetstream.StreamConfig{
		Name: StreamBatches, Subjects: []string{"qfetch.batch.>"},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, e *env)
		want    string
	}{
		{"limits retention", func(t *testing.T, e *env) {
			c := base
			c.Retention = jetstream.LimitsPolicy
			mustStream(t, e, c)
		}, "retention"},
		{"memory storage", func(t *testing.T, e *env) {
			c := base
			c.Storage = jetstream.MemoryStorage
			mustStream(t, e, c)
		}, "storage"},
		{"other subjects", func(t *testing.T, e *env) {
			c := base
			c.Subjects = []string{"qfetch.batch.*", "other.>"}
			mustStream(t, e, c)
		}, "subjects"},
		{"deny purge", func(t *testing.T, e *env) {
			c := base
			c.DenyPurge = true
			mustStream(t, e, c)
		}, "deny purge"},
		{"DLQ with work-queue retention", func(t *testing.T, e *env) {
			mustStream(t, e, jetstream.StreamConfig{Name: StreamDLQ, Subjects: []string{"qfetch.dlq.>"},
				Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage})
		}, "stream QFETCH_DLQ exists with retention"},
		{"push consumer", func(t *testing.T, e *env) {
			mustStream(t, e, base)
			// The jetstream package creates pull consumers only.
			legacy, err := e.JS.Conn().JetStream()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := legacy.AddConsumer(StreamBatches, &nats.ConsumerConfig{
				Durable: ConsumerWorkers, AckPolicy: nats.AckExplicitPolicy, FilterSubject: "qfetch.batch.>",
				DeliverSubject: "somewhere",
			}); err != nil {
				t.Fatal(err)
			}
		}, "mode push"},
		{"consumer with another filter", func(t *testing.T, e *env) {
			mustStream(t, e, base)
			if _, err := e.JS.CreateConsumer(e.Ctx, StreamBatches, jetstream.ConsumerConfig{
				Durable: ConsumerWorkers, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "qfetch.batch.only",
			}); err != nil {
				t.Fatal(err)
			}
		}, "filter subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			tt.prepare(t, e)
			_, err := Setup(e.Ctx, e.JS, Config{})
			if !errors.Is(err, ErrIncompatible) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want ErrIncompatible naming %q, got %v", tt.want, err)
			}
			if failure.ClassOf(err) != failure.ClassFleetWide {
				t.Errorf("class %v, want fleet-wide", failure.ClassOf(err))
			}
			t.Log(err) // the operator's view
		})
	}
}

func mustStream(t *testing.T, e *env, c jetstream.StreamConfig) {
	t.Helper()
	if _, err := e.JS.CreateStream(e.Ctx, c); err != nil {
		t.Fatalf("create stream %s: %v", c.Name, err)
	}
}

func TestSetupRejectsBadConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, err := Setup(e.Ctx, e.JS, Config{MaxInFlight: -3})
	if err == nil || !strings.Contains(err.Error(), "max in flight") {
		t.Fatalf("want a config error, got %v", err)
	}
	if _, err := e.JS.Stream(e.Ctx, StreamBatches); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a bad config must create nothing; stream lookup: %v", err)
	}
}

// TestAdoptConsumerLeavesFleetCap: a process that adopts the consumer (the
// planner) does not move the workers' MaxAckPending.
func TestAdoptConsumerLeavesFleetCap(t *testing.T) {
	e := setup(t, Config{MaxInFlight: 5})
	if _, err := Setup(t.Context(), e.JS, Config{MaxInFlight: 2, AdoptConsumer: true}); err != nil {
		t.Fatal(err)
	}
	c, err := e.JS.Consumer(t.Context(), StreamBatches, ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.MaxAckPending; got != 5 {
		t.Fatalf("MaxAckPending = %d after an adopting Setup, want the workers' 5", got)
	}
	if _, err := Setup(t.Context(), e.JS, Config{MaxInFlight: 3}); err != nil {
		t.Fatal(err)
	}
	c, _ = e.JS.Consumer(t.Context(), StreamBatches, ConsumerWorkers)
	if got := c.CachedInfo().Config.MaxAckPending; got != 3 {
		t.Fatalf("MaxAckPending = %d after an owning Setup, want 3", got)
	}
}
