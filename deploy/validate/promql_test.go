package validate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qfetch/qfetch/internal/ledger"
)

// promql parses as a default Prometheus does: no experimental functions.
var promql = parser.NewParser(parser.Options{})

// targetLabels are the labels Prometheus adds to every series it scrapes
// (job, instance) and the ones the Prometheus operator's PodMonitor adds.
var targetLabels = map[string]bool{
	"job": true, "instance": true, "namespace": true, "pod": true, "container": true, "endpoint": true,
}

// labelValues are label values the code exports as a list.
var labelValues = map[string]func() []string{
	"state": func() []string {
		var out []string
		for _, s := range ledger.States {
			out = append(out, string(s))
		}
		return out
	},
}

// checkExpr parses a PromQL expression and checks that every selector
// names a known series, matches only labels that series carries (its own
// or a target label), and that run-level gauges, which the exporter and
// every worker pod serve alike, are never summed, averaged or counted
// across pods.
func checkExpr(known map[string]series, expr string) []error {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return []error{fmt.Errorf("does not parse: %w", err)}
	}
	var errs []error
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		if name == "" {
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
					name = m.Value
				}
			}
		}
		if name == "" {
			errs = append(errs, fmt.Errorf("%s: selector without a metric name", vs))
			return nil
		}
		s, ok := known[name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no such metric (neither the worker nor the exporter exports it, no rule records it)", name))
			return nil
		}
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				continue
			}
			if s.labels != nil && !s.labels[m.Name] && !targetLabels[m.Name] {
				errs = append(errs, fmt.Errorf("%s: has no label %q", name, m.Name))
			}
			if vals, ok := labelValues[m.Name]; ok && m.Type == labels.MatchEqual && !slices.Contains(vals(), m.Value) {
				errs = append(errs, fmt.Errorf("%s: %s=%q is not one of %q", name, m.Name, m.Value, vals()))
			}
		}
		if s.from == "runstat.NewMetrics" && s.typ == dto.MetricType_GAUGE {
			for i := len(path) - 1; i >= 0; i-- {
				if a, ok := path[i].(*parser.AggregateExpr); ok {
					if op := a.Op.String(); op != "max" && op != "min" {
						errs = append(errs, fmt.Errorf("%s: %s across pods; every pod serves the same value: use max", name, op))
					}
					break
				}
			}
		}
		return nil
	})
	return errs
}

// withRecorded adds the series recording rules produce. Their labels are
// the grouping of a top-level "by" aggregation, else not known.
func withRecorded(t *testing.T, known map[string]series, recorded map[string]string) map[string]series {
	t.Helper()
	out := make(map[string]series, len(known)+len(recorded))
	for k, v := range known {
		out[k] = v
	}
	for name, expr := range recorded {
		if _, ok := known[name]; ok {
			t.Errorf("recording rule %s shadows an exported metric", name)
		}
		s := series{family: name, typ: dto.MetricType_UNTYPED, from: "recording rule"}
		if e, err := promql.ParseExpr(expr); err == nil {
			if a, ok := e.(*parser.AggregateExpr); ok && !a.Without {
				s.labels = map[string]bool{}
				for _, l := range a.Grouping {
					s.labels[l] = true
				}
			}
		}
		out[name] = s
	}
	return out
}

// TestCheckExprRejects keeps checkExpr honest: each expression is wrong in
// one way that it must name.
func TestCheckExprRejects(t *testing.T) {
	known := exportedSeries(t)
	for _, tc := range []struct{ expr, want string }{
		{`qfetch_worker_batches_totals`, "no such metric"},
		{`rate(qfetch_worker_upload_seconds[5m])`, "no such metric"},
		{`histogram_quantile(0.9, sum by (le) (rate(qfetch_worker_upload_second_bucket[5m])))`, "no such metric"},
		{`qfetch_worker_batches_total{outcom="done"}`, `no label "outcom"`},
		{`qfetch_runs{state="stuck"}`, "is not one of"},
		{`sum(qfetch_dead_letters)`, "use max"},
		{`{__name__=~"qfetch_.*"}`, "without a metric name"},
		{`max(qfetch_dead_letters`, "does not parse"},
	} {
		errs := checkExpr(known, tc.expr)
		if err := errors.Join(errs...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", tc.expr, err, tc.want)
		}
	}
	for _, ok := range []string{
		`max by (namespace) (qfetch_dead_letters)`,
		`sum(rate(qfetch_worker_upload_seconds_sum{namespace="x"}[5m]))`,
		`sum by (namespace) (rate(qfetch_status_refresh_errors_total[5m]))`,
		`process_resident_memory_bytes and on (job, instance) qfetch_worker_calls_in_flight`,
	} {
		if errs := checkExpr(known, ok); len(errs) > 0 {
			t.Errorf("%s: %v", ok, errors.Join(errs...))
		}
	}
}
