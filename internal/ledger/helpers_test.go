package ledger

import (
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/testenv"
)

// env is one test's JetStream and (after setup) a Ledger on it.
type env struct {
	testenv.JetStream
	l *Ledger
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
	l, err := Setup(e.Ctx, e.JS, cfg)
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
