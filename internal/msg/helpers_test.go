package msg

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// env is one test's JetStream: a fresh embedded server, a connection, and
// (after setup) a Queue on it.
type env struct {
	url string
	js  jetstream.JetStream
	q   *Queue
	ctx context.Context
}

// newEnv starts a server and connects, without calling Setup.
func newEnv(t *testing.T) *env {
	t.Helper()
	url := testenv.NATSURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return &env{url: url, js: testenv.Connect(t, url), ctx: ctx}
}

// setup is newEnv plus Setup with cfg.
func setup(t *testing.T, cfg Config) *env {
	t.Helper()
	e := newEnv(t)
	q, err := Setup(e.ctx, e.js, cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	e.q = q
	return e
}

var (
	testBefore = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	testAfter  = time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC)
)

// testBatch is a valid batch n of run with a few hosts.
func testBatch(run string, n int) Batch {
	return Batch{
		Run: run, Number: n, After: testAfter, Before: testBefore,
		IDs: "101,103-105", Hosts: 4,
		Params: map[string][]string{"status": {"New,Active,Re-Opened,Fixed"}},
	}
}

// publishAll publishes bs and waits for their acks.
func publishAll(t *testing.T, e *env, bs ...Batch) PublishStats {
	t.Helper()
	p := e.q.Publisher(PublisherOptions{Window: 8})
	for _, b := range bs {
		if err := p.Publish(e.ctx, b); err != nil {
			t.Fatalf("Publish %s: %v", b.MsgID(), err)
		}
	}
	if err := p.Wait(e.ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return p.Stats()
}

// noHook is a Replay hook that does nothing.
func noHook(Batch) error { return nil }
