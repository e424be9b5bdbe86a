package msg

import (
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/testenv"
)

// env is one test's JetStream and (after setup) a Queue on it.
type env struct {
	testenv.JetStream
	q *Queue
}

// newEnv starts a server and connects, without calling Setup.
func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{JetStream: testenv.NewJetStream(t)}
}

// setup is newEnv plus Setup with cfg.
func setup(t *testing.T, cfg Config) *env {
	t.Helper()
	e := newEnv(t)
	q, err := Setup(e.Ctx, e.JS, cfg)
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
		if err := p.Publish(e.Ctx, b); err != nil {
			t.Fatalf("Publish %s: %v", b.MsgID(), err)
		}
	}
	if err := p.Wait(e.Ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return p.Stats()
}

// noHook is a Replay hook that does nothing.
func noHook(Batch) error { return nil }
