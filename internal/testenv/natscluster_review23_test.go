package testenv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReview23FirstR3AfterReady: a test's first streams on a new cluster,
// made through SetUp, are made. The review found two ways a bare first
// create failed right after StartNATSCluster, each in a few clusters of a
// dozen on this machine:
//
//   - WaitReady deleted a placement probe, the account's only stream; the
//     server then removes the account's empty store directories in a
//     goroutine of its own, racing the test's first create: "error
//     creating store for stream" (10049). WaitReady creates nothing now.
//   - a placement that worked once is no promise for the next: a later R3
//     create still met "no suitable peers for placement, peer offline"
//     (10005). SetUp asks again, as the planner's set-up does.
func TestReview23FirstR3AfterReady(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := testenv.StartNATSCluster(t)
			_, js := testenv.ConnectCluster(t, c.URLs())
			for j := range 5 {
				name := fmt.Sprintf("R23_%d", j)
				c.SetUp("a stream at R1, scaled to R3, and one at R3", func(ctx context.Context) error {
					cfg := jetstream.StreamConfig{Name: name, Subjects: []string{"r23." + name}, Replicas: 1}
					if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
						return fmt.Errorf("create %s at R1: %w", name, err)
					}
					cfg.Replicas = 3
					if _, err := js.UpdateStream(ctx, cfg); err != nil {
						return fmt.Errorf("scale %s to R3: %w", name, err)
					}
					_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name + "_3", Subjects: []string{"r23.3." + name}, Replicas: 3})
					return err
				})
			}
		})
	}
}
