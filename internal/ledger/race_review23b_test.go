package ledger

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestReview23bTwoSetupsAtOnceOnACluster: Setup says several processes
// may call it at once. Two planners' Setups on a new three-node cluster,
// started together, each on its own connection, both succeed, and leave
// every bucket read through its leader (direct gets off) and the run
// records and watermark without roll-ups.
//
// On nats-server 2.15.2 they do not: one planner's create of a bucket is
// answered, and its update right after (leaderReads: direct gets off) is
// never answered, nor is the other planner's create of the same bucket,
// racing it; each waits out its context (nats.go's 5 s default without a
// deadline, when app.setUp asks again, bucket after bucket). Two creates
// alone are both answered at once: it is the update right after a create
// that a second create must not meet (create the stream with its final
// settings in one request, and nothing follows it).
func TestReview23bTwoSetupsAtOnceOnACluster(t *testing.T) {
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := testenv.StartNATSCluster(t)
			var jss [2]jetstream.JetStream
			for j := range jss {
				_, jss[j] = testenv.ConnectCluster(t, c.URLs())
			}
			var wg sync.WaitGroup
			var errs [2]error
			var took [2]time.Duration
			start := make(chan struct{})
			for j := range jss {
				wg.Go(func() {
					ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
					defer cancel()
					<-start
					t0 := time.Now()
					_, errs[j] = Setup(ctx, jss[j], Config{Replicas: 3})
					took[j] = time.Since(t0)
				})
			}
			close(start)
			wg.Wait()
			for j, err := range errs {
				if err != nil {
					t.Errorf("Setup %d of two at once (after %v): %v", j, took[j].Round(time.Millisecond), err)
				}
			}
			if t.Failed() {
				return
			}
			for _, b := range wanted(Config{}) {
				s, err := jss[0].Stream(t.Context(), "KV_"+b.Bucket)
				if err != nil {
					t.Fatal(err)
				}
				cfg := s.CachedInfo().Config
				if cfg.AllowDirect || cfg.AllowRollup != keepsRollups(b.Bucket) {
					t.Errorf("KV_%s after two Setups at once: direct gets %v, roll-ups %v", b.Bucket, cfg.AllowDirect, cfg.AllowRollup)
				}
			}
		})
	}
}
