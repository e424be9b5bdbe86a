package ledger

import (
	"context"
	"strings"
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

	// The update requests themselves, seen on the connection that sends
	// them: the server delivers them to it before its answer to a flush.
	// (Advisories come from each stream's leader, in no order across
	// servers.)
	sub, err := nc.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := Setup(ctx, js, Config{Replicas: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := sub.NextMsg(0)
		if err != nil {
			break
		}
		got = append(got, m.Subject[strings.LastIndex(m.Subject, ".")+1:])
	}
	if len(got) != 0 {
		t.Errorf("two passes over R3 buckets at qfetch's settings updated %v", got)
	}

	if _, err := Setup(ctx, js, Config{Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	replicas(1)
}
