package msg

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// A process that keeps the streams (a worker, the exporter) creates none
// (#17: a credential other than the planner's cannot pre-create a stream
// with settings of its choosing): before a planner has set up, it is told
// to wait, and once one has, it binds.
func TestKeepStreamsCreatesNothing(t *testing.T) {
	js := testenv.Connect(t, testenv.NATSURL(t))
	ctx := t.Context()
	_, err := Setup(ctx, js, Config{KeepStreams: true})
	if !errors.Is(err, ErrNotSetUp) || failure.ClassOf(err) != failure.ClassRetryable {
		t.Fatalf("a keeping Setup before any planner: %v (class %v), want a retryable %v", err, failure.ClassOf(err), ErrNotSetUp)
	}
	for _, name := range []string{StreamBatches, StreamDLQ} {
		if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("a keeping Setup created stream %s (lookup: %v)", name, err)
		}
	}
	if _, err := Setup(ctx, js, Config{AdoptConsumer: true}); err != nil { // the planner
		t.Fatal(err)
	}
	if _, err := Setup(ctx, js, Config{KeepStreams: true}); err != nil {
		t.Fatalf("a keeping Setup once the planner set up: %v", err)
	}
}
