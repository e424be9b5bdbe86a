package app

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestSetUpGivesUpOnALostQuorum: a planner whose set-up meets a
// cluster without quorum, with the default wait, must still fail its pass
// fleet-wide (exit 3) — the README says it asks again "for up to 30 s" and
// e2e's quorum scenario gives the whole planner 3 minutes — and not take
// much longer than the wait: each try is itself several requests that
// each time out.
func TestSetUpGivesUpOnALostQuorum(t *testing.T) {
	var s Sections
	_, js := lostQuorum(t, &s)
	start := time.Now()
	_, err := setUp(t.Context(), js, s, RolePlanner, slog.New(slog.DiscardHandler))
	took := time.Since(start)
	t.Logf("set-up without quorum returned after %s: %v", took.Round(100*time.Millisecond), err)
	if !errors.Is(err, msg.ErrJetStreamUnavailable) || failure.ClassOf(err) != failure.ClassFleetWide {
		t.Fatalf("err = %v (class %v), want fleet-wide JetStream unavailable (exit 3)", err, failure.ClassOf(err))
	}
	// A bound against asking for ever, not a measure: a try under load
	// can take many seconds.
	if limit := 3 * DefaultSetupWait; took > limit {
		t.Fatalf("set-up took %s to give up, over three times its wait of %s", took.Round(time.Second), DefaultSetupWait)
	}
}

// TestSetUpDoesNotWaitOutAServerWithoutJetStream: a planner
// pointed at a NATS server without JetStream (the wrong URL, JetStream left
// off) is misconfigured, and no election mends it: its set-up must fail at
// once, not ask again for the whole wait as if the requests had gone
// unanswered. (It holds: the server answers "jetstream not enabled".)
func TestSetUpDoesNotWaitOutAServerWithoutJetStream(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	js := testenv.Connect(t, srv.ClientURL())
	s := Sections{NATS: config.NATS{URL: srv.ClientURL()}, SetupWait: 20 * time.Second}
	retries := &retryLog{seen: make(chan error, 1)}
	_, err = setUp(t.Context(), js, s, RolePlanner, slog.New(retries))
	if err == nil {
		t.Fatal("set up without JetStream")
	}
	select {
	case first := <-retries.seen:
		t.Fatalf("set-up asked again after %v, for a server that answered that JetStream is not enabled", first)
	default:
	}
}
