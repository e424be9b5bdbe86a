package msg

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/testenv"
)

// BenchmarkPublish measures the planner's side of the queue: batches of 1000
// scattered host IDs (about 8 KB each) through a Publisher, acks awaited.
func BenchmarkPublish(b *testing.B) {
	for _, window := range []int{1, 64} {
		b.Run("window="+strconv.Itoa(window), func(b *testing.B) {
			e := benchSetup(b)
			ids := make([]string, 1000)
			for i := range ids {
				ids[i] = strconv.Itoa(1_000_000 + 3*i)
			}
			batch := testBatch("bench", 1)
			batch.IDs, batch.Hosts = strings.Join(ids, ","), len(ids)
			p := e.q.Publisher(PublisherOptions{Window: window})
			b.ResetTimer()
			for i := range b.N {
				batch.Number = i + 1
				if err := p.Publish(e.Ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Wait(e.Ctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "batches/s")
		})
	}
}

func benchSetup(b *testing.B) *env {
	b.Helper()
	url := testenv.NATSURL(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	b.Cleanup(cancel)
	js := testenv.Connect(b, url)
	q, err := Setup(ctx, js, Config{})
	if err != nil {
		b.Fatal(err)
	}
	return &env{JetStream: testenv.JetStream{URL: url, JS: js, Ctx: ctx}, q: q}
}
