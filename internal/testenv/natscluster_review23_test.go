package testenv_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReview23FirstR3AfterReady: WaitReady (which StartNATSCluster calls)
// promises that "a new R3 stream [is] placed": the first R3 streams a test
// asks for right after it, and an R1 stream scaled to R3, are placed on
// the first ask, without "no suitable peers". Several fresh clusters, so
// that a window WaitReady's single probe leaves open shows.
func TestReview23FirstR3AfterReady(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := testenv.StartNATSCluster(t)
			_, js := testenv.ConnectCluster(t, c.URLs())
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			for j := range 5 {
				name := fmt.Sprintf("R23_%d", j)
				cfg := jetstream.StreamConfig{Name: name, Subjects: []string{"r23." + name}, Replicas: 1}
				if _, err := js.CreateStream(ctx, cfg); err != nil {
					t.Fatalf("create %s at R1: %v", name, err)
				}
				cfg.Replicas = 3
				if _, err := js.UpdateStream(ctx, cfg); err != nil {
					t.Fatalf("scale %s to R3 right after StartNATSCluster: %v", name, err)
				}
				if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name + "_3", Subjects: []string{"r23.3." + name}, Replicas: 3}); err != nil {
					t.Fatalf("create %s_3 at R3 right after StartNATSCluster: %v", name, err)
				}
			}
		})
	}
}
