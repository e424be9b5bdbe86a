package ledger

import (
	"context"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReview23ClusterReplicasAndNormalisation: on a three-node cluster,
// a planner with QFETCH_NATS_STREAM_REPLICAS changed 1→3 (and back) brings
// every bucket to it (settled compares replicas), and two passes over
// buckets already at R3 update nothing: nothing the clustered server
// normalises (placement, metadata, duplicates) makes a bucket look
// unsettled for ever.
func TestReview23ClusterReplicasAndNormalisation(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	nc, js := testenv.ConnectCluster(t, c.URLs())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	replicas := func(want int) {
		t.Helper()
		for _, b := range wanted(Config{}) {
			s, err := js.Stream(ctx, "KV_"+b.Bucket)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.CachedInfo().Config.Replicas; got != want {
				t.Errorf("KV_%s at R%d, want R%d", b.Bucket, got, want)
			}
		}
	}
	// A new cluster may refuse its first placements for a while.
	c.SetUp("the ledger at R1", func(ctx context.Context) error {
		_, err := Setup(ctx, js, Config{Replicas: 1})
		return err
	})
	replicas(1)
	c.SetUp("the ledger scaled to R3", func(ctx context.Context) error {
		_, err := Setup(ctx, js, Config{Replicas: 3})
		return err
	})
	replicas(3)

	got := testenv.StreamUpdates(t, nc, func() {
		for range 2 {
			if _, err := Setup(ctx, js, Config{Replicas: 3}); err != nil {
				t.Fatal(err)
			}
		}
	})
	if len(got) != 0 {
		t.Errorf("two passes over R3 buckets at qfetch's settings updated %v", got)
	}

	if _, err := Setup(ctx, js, Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	replicas(1)
}
