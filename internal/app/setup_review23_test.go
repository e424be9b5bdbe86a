package app

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReview23SetUpWithOneServerDown: on a deployment already set up at R3,
// a planner pass with one server of three down is set up at once: what
// exists is not placed again, so "no suitable peers" (and the wait for it)
// never comes up; nor does a worker's.
func TestReview23SetUpWithOneServerDown(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	s := Sections{SetupWait: 20 * time.Second}
	s.NATS = config.NATS{URL: c.URLs(), StreamReplicas: 3}
	_, js := testenv.ConnectCluster(t, c.URLs())
	c.SetUp("the first set-up on a new cluster", func(ctx context.Context) error {
		_, err := setUp(ctx, js, s, RolePlanner, slog.New(slog.DiscardHandler))
		return err
	})
	c.Shutdown(2)
	c.WaitReady(time.Minute)
	for _, role := range []Role{RolePlanner, RoleWorker} {
		retries := &retryLog{seen: make(chan error, 1)}
		if _, err := setUp(t.Context(), js, s, role, slog.New(retries)); err != nil {
			t.Fatalf("%v set-up with one server down: %v", role, err)
		}
		select {
		case err := <-retries.seen:
			t.Errorf("%v set-up with one server down asked again after %v", role, err)
		default:
		}
	}
}

// TestReview23NoPeersWaitEndsWithItsContext: a planner asking again on
// "no suitable peers" (R5 on three servers, a wait of an hour) returns
// as soon as its context ends, with the server's answer.
func TestReview23NoPeersWaitEndsWithItsContext(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	s := Sections{SetupWait: time.Hour}
	s.NATS = config.NATS{URL: c.URLs(), StreamReplicas: 5}
	_, js := testenv.ConnectCluster(t, c.URLs())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	retries := &retryLog{seen: make(chan error, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := setUp(ctx, js, s, RolePlanner, slog.New(retries))
		done <- err
	}()
	select {
	case <-retries.seen:
	case err := <-done:
		t.Fatalf("returned before asking again: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		// The server's answer, or the context's end if it came mid-try.
		if !msg.NoPeers(err) && !errors.Is(err, context.Canceled) {
			t.Fatalf("after its context ended: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the set-up went on asking after its context ended")
	}
}
