package msg

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// A process that adopts the consumer (a planner, the exporter) never
// creates it: only workers may (their NATS user alone has the right, I5).
// Until one has, the queue's state counts the stream; once one has, the
// queue binds to it.
func TestAdoptingSetupCreatesNoConsumer(t *testing.T) {
	js := testenv.Connect(t, testenv.NATSURL(t))
	ctx := t.Context()
	q, err := Setup(ctx, js, Config{AdoptConsumer: true}) // a planner's
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, StreamBatches, ConsumerWorkers); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("an adopting Setup created the consumer (lookup: %v)", err)
	}
	b := Batch{Run: "20260110T000000Z-adopt", Number: 1, Hosts: 1, IDs: "1", Before: time.Now().UTC()}
	p := q.Publisher(PublisherOptions{})
	if err := p.Publish(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := q.State(ctx)
	if err != nil || st.Queued != 1 || st.MaxInFlight != 0 {
		t.Fatalf("state before any worker: %+v, %v; want 1 queued, no cap", st, err)
	}
	if _, _, err := q.InFlight(ctx); !errors.Is(err, ErrNotSetUp) {
		t.Errorf("in flight before any worker: %v, want %v", err, ErrNotSetUp)
	}
	if _, err := Setup(ctx, js, Config{MaxInFlight: 3}); err != nil {
		t.Fatal(err)
	}
	st, err = q.State(ctx)
	if err != nil || st.Queued != 1 || st.MaxInFlight != 3 {
		t.Fatalf("state once a worker set up: %+v, %v; want 1 queued, cap 3", st, err)
	}
}

// KeepStreams leaves an existing stream's settings as they are.
func TestKeepStreamsChangesNothing(t *testing.T) {
	js := testenv.Connect(t, testenv.NATSURL(t))
	ctx := t.Context()
	if _, err := Setup(ctx, js, Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(ctx, js, Config{KeepStreams: true, DuplicateWindow: time.Minute}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != DefaultDuplicateWindow {
		t.Errorf("duplicate window %s after a keeping Setup, want the first %s", got, DefaultDuplicateWindow)
	}
}
