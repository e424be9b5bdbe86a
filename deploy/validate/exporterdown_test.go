package validate

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/promqltest"
)

// TestExporterDownPerNamespace: the rules group every alert by
// namespace ("one qfetch per namespace"). With two installations, the
// exporter of namespace b gone while a worker there still runs, and the
// exporter of namespace a fine, QfetchExporterDown must fire for b.
func TestExporterDownPerNamespace(t *testing.T) {
	_, groups := baseRules(t)
	expr := ""
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "QfetchExporterDown" {
				expr = r.Expr
			}
		}
	}
	if expr == "" {
		t.Fatal("no QfetchExporterDown")
	}
	load := `load 5m
  qfetch_status_refresh_timestamp_seconds{namespace="a",pod="qfetch-exporter-x",container="exporter"} 0+300x12
  qfetch_status_refresh_timestamp_seconds{namespace="a",pod="qfetch-worker-x",container="worker"} 0+300x12
  qfetch_status_refresh_timestamp_seconds{namespace="b",pod="qfetch-worker-y",container="worker"} 0+300x12
`
	ll, err := promqltest.NewLazyLoader(load, promqltest.LazyLoaderOpts{Parser: promql})
	if err != nil {
		t.Fatal(err)
	}
	defer ll.Close()
	ts := time.Unix(0, 0).Add(time.Hour)
	ll.WithSamplesTill(ts, func(err error) {
		if err != nil {
			t.Fatal(err)
		}
		q, err := ll.QueryEngine().NewInstantQuery(context.Background(), ll.Storage(), nil, expr, ts)
		if err != nil {
			t.Fatal(err)
		}
		res := q.Exec(context.Background())
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		v, _ := res.Vector()
		for _, s := range v {
			if s.Metric.Get("namespace") == "b" {
				return
			}
		}
		t.Errorf("namespace b has no exporter; %s gives %v", expr, v)
	})
}
