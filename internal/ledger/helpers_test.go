package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// env is one test's JetStream: a fresh embedded server, a connection, and
// (after setup) a Ledger on it.
type env struct {
	url string
	js  jetstream.JetStream
	l   *Ledger
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
	l, err := Setup(e.ctx, e.js, cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	e.l = l
	return e
}

var (
	testBefore = time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	testAfter  = time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC)
)
