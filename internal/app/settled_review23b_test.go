package app

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/testenv"
)

// updatesOf runs passes planner set-ups on js and returns the streams
// whose update requests its connection sent meanwhile.
func updatesOf(t *testing.T, js jetstream.JetStream, s Sections, passes int) []string {
	t.Helper()
	return testenv.StreamUpdates(t, js.Conn(), func() {
		for range passes {
			if _, err := setUp(t.Context(), js, s, RolePlanner, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestReview23bPlannerPassesSettleOnOneServer: the planner's whole set-up
// (buckets, queue, tables) run twice over a deployment it set up updates
// no stream, and neither does it after the server restarts (the streams'
// configuration then comes from the store).
func TestReview23bPlannerPassesSettleOnOneServer(t *testing.T) {
	n := testenv.StartNATS(t)
	s := Sections{SetupWait: 30 * time.Second}
	s.NATS = config.NATS{URL: n.URL(), StreamReplicas: 1}
	_, js := testenv.ConnectCluster(t, n.URL())
	if _, err := setUp(t.Context(), js, s, RolePlanner, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if got := updatesOf(t, js, s, 2); len(got) != 0 {
		t.Errorf("two planner passes on one server updated %v", got)
	}
	n.Restart()
	testenv.EventuallyOK(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	}, "JetStream back after the restart")
	if got := updatesOf(t, js, s, 2); len(got) != 0 {
		t.Errorf("two planner passes after a restart updated %v", got)
	}
}

// TestReview23bPlannerPassesSettleOnACluster: the same on a three-node
// cluster at R3, before and after every node restarted in turn.
func TestReview23bPlannerPassesSettleOnACluster(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	s := Sections{SetupWait: 30 * time.Second}
	s.NATS = config.NATS{URL: c.URLs(), StreamReplicas: 3}
	_, js := testenv.ConnectCluster(t, c.URLs(), nats.ReconnectWait(100*time.Millisecond))
	c.SetUp("the first set-up on a new cluster", func(ctx context.Context) error {
		_, err := setUp(ctx, js, s, RolePlanner, slog.New(slog.DiscardHandler))
		return err
	})
	if got := updatesOf(t, js, s, 2); len(got) != 0 {
		t.Errorf("two planner passes on a cluster updated %v", got)
	}
	for i := range testenv.ClusterSize {
		c.Shutdown(i)
		c.Start(i)
		c.WaitReady(2 * time.Minute)
	}
	if got := updatesOf(t, js, s, 2); len(got) != 0 {
		t.Errorf("two planner passes after a rolling restart updated %v", got)
	}
}
