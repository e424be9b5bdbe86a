package app

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReview23bFirstPlannerSetUpOnANewCluster: a planner's own set-up
// (which asks again on no answer and on "no suitable peers") succeeds on
// its first call right after StartNATSCluster, without the test's SetUp
// around it: what a new deployment's first planner pass meets.
func TestReview23bFirstPlannerSetUpOnANewCluster(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := testenv.StartNATSCluster(t)
			s := Sections{SetupWait: 30 * time.Second}
			s.NATS = config.NATS{URL: c.URLs(), StreamReplicas: 3}
			_, js := testenv.ConnectCluster(t, c.URLs())
			if _, err := setUp(t.Context(), js, s, RolePlanner, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatalf("the first planner set-up on a new cluster: %v", err)
			}
		})
	}
}
