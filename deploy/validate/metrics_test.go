package validate

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/runstat"
)

// workerCollectors are the constructors cmd/worker registers its /metrics
// with, by the name it calls them; TestWorkerCollectorsMirrorBinary holds
// the two together.
var workerCollectors = map[string]func(prometheus.Registerer){
	"collectors.NewGoCollector": func(r prometheus.Registerer) { r.MustRegister(collectors.NewGoCollector()) },
	"collectors.NewProcessCollector": func(r prometheus.Registerer) {
		r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	},
	"fetch.NewMetrics":   func(r prometheus.Registerer) { fetch.NewMetrics(r) },
	"runstat.NewMetrics": func(r prometheus.Registerer) { runstat.NewMetrics(r) },
}

// series is one name a worker's /metrics can carry: a metric family's
// name, or a histogram's or summary's _bucket, _sum and _count.
type series struct {
	family string
	typ    dto.MetricType
	from   string          // the constructor that registered it
	labels map[string]bool // nil: not known (a recording rule's output)
}

// recorder is a Registerer that remembers what was registered through it.
// Its Descs are the robust inventory: a *Vec with no child yet, like
// qfetch_worker_batches_total before the first batch, is absent from
// Gather but always described.
type recorder struct {
	prometheus.Registerer
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// exportedSeries registers the worker's collectors into one registry, as
// cmd/worker does, and lists every series name they can expose.
func exportedSeries(t *testing.T) map[string]series {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	type origin struct {
		from string
		c    prometheus.Collector
	}
	var all []origin
	for _, from := range sortedKeys(workerCollectors) {
		rec := &recorder{Registerer: reg}
		workerCollectors[from](rec)
		if len(rec.collectors) == 0 {
			t.Fatalf("%s registered no collector", from)
		}
		for _, c := range rec.collectors {
			all = append(all, origin{from, c})
		}
	}
	// Types of the families that have series now; the others are Vecs
	// without children, typed by their Go type below.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering the worker's metrics: %v", err)
	}
	gathered := map[string]dto.MetricType{}
	for _, mf := range mfs {
		gathered[mf.GetName()] = mf.GetType()
	}
	out := map[string]series{}
	for _, o := range all {
		for _, d := range describe(o.c) {
			name, labels, err := descName(d)
			if err != nil {
				t.Fatalf("%s: %v: %v", o.from, d, err)
			}
			typ, ok := gathered[name]
			if !ok {
				if typ, ok = vecType(o.c); !ok {
					t.Fatalf("%s: %s has no series and its collector %T does not say its type", o.from, name, o.c)
				}
			}
			add := func(n string, extra ...string) {
				ls := map[string]bool{}
				for _, l := range append(slices.Clone(labels), extra...) {
					ls[l] = true
				}
				out[n] = series{family: name, typ: typ, from: o.from, labels: ls}
			}
			switch typ {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				add(name+"_bucket", "le")
				add(name + "_sum")
				add(name + "_count")
			case dto.MetricType_SUMMARY:
				add(name, "quantile")
				add(name + "_sum")
				add(name + "_count")
			default:
				add(name)
			}
		}
	}
	return out
}

func describe(c prometheus.Collector) []*prometheus.Desc {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	var out []*prometheus.Desc
	for d := range ch {
		out = append(out, d)
	}
	return out
}

// descName returns a Desc's fully-qualified name and its label names
// (constant and variable). client_golang has no accessor for either (only
// String(), a debugging format), so it asks the library itself: a constant
// metric made from the Desc, gathered by a registry of its own, is a metric
// family named exactly fqName whose one series carries every label.
// NewConstMetric refuses a wrong number of label values, which tells how
// many variable labels the Desc has.
func descName(d *prometheus.Desc) (string, []string, error) {
	var m prometheus.Metric
	var err error
	for n := 0; n <= 32 && m == nil; n++ {
		vals := make([]string, n)
		for i := range vals {
			vals[i] = fmt.Sprintf("v%d", i)
		}
		m, err = prometheus.NewConstMetric(d, prometheus.UntypedValue, 0, vals...)
	}
	if m == nil {
		return "", nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(constCollector{m}); err != nil {
		return "", nil, err
	}
	mfs, err := reg.Gather()
	if err != nil {
		return "", nil, err
	}
	if len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		return "", nil, fmt.Errorf("gathered %d families from one metric", len(mfs))
	}
	var labels []string
	for _, lp := range mfs[0].GetMetric()[0].GetLabel() {
		labels = append(labels, lp.GetName())
	}
	return mfs[0].GetName(), labels, nil
}

type constCollector struct{ m prometheus.Metric }

func (c constCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.Desc() }
func (c constCollector) Collect(ch chan<- prometheus.Metric) { ch <- c.m }

// vecType is the type of a Vec, which has no series until its first child.
func vecType(c prometheus.Collector) (dto.MetricType, bool) {
	switch c.(type) {
	case *prometheus.CounterVec:
		return dto.MetricType_COUNTER, true
	case *prometheus.GaugeVec:
		return dto.MetricType_GAUGE, true
	case *prometheus.HistogramVec:
		return dto.MetricType_HISTOGRAM, true
	case *prometheus.SummaryVec:
		return dto.MetricType_SUMMARY, true
	}
	return 0, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestExportedSeries pins the inventory itself: names the issue and the
// alerts rely on, Vecs without children, and histogram series.
func TestExportedSeries(t *testing.T) {
	got := exportedSeries(t)
	for name, want := range map[string]struct {
		typ    dto.MetricType
		labels []string
	}{
		"qfetch_worker_batches_total":                {dto.MetricType_COUNTER, []string{"outcome", "class"}},
		"qfetch_worker_qualys_responses_total":       {dto.MetricType_COUNTER, []string{"status", "code"}},
		"qfetch_worker_upload_seconds_bucket":        {dto.MetricType_HISTOGRAM, []string{"le"}},
		"qfetch_worker_upload_seconds_count":         {dto.MetricType_HISTOGRAM, nil},
		"qfetch_last_complete_run_timestamp_seconds": {dto.MetricType_GAUGE, nil},
		"qfetch_last_complete_run_age_seconds":       {dto.MetricType_GAUGE, nil},
		"qfetch_runs":                                {dto.MetricType_GAUGE, []string{"state"}},
		"qfetch_current_run":                         {dto.MetricType_GAUGE, []string{"measure"}},
		"qfetch_status_refresh_errors_total":         {dto.MetricType_COUNTER, nil},
		"process_resident_memory_bytes":              {dto.MetricType_GAUGE, nil},
	} {
		s, ok := got[name]
		if !ok {
			t.Errorf("%s: not exported", name)
			continue
		}
		var labels []string
		for l := range s.labels {
			labels = append(labels, l)
		}
		if s.typ != want.typ || !sameSet(labels, want.labels) {
			t.Errorf("%s: %s %v, want %s %v", name, s.typ, labels, want.typ, want.labels)
		}
	}
	if _, ok := got["qfetch_worker_upload_seconds"]; ok {
		t.Error("a histogram's family name is not a series name")
	}
	t.Logf("%d series names from %d constructors", len(got), len(workerCollectors))
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestWorkerCollectorsMirrorBinary: the constructors cmd/worker calls to
// fill its registry are the ones exportedSeries registers, so the names the
// rules and the dashboard are checked against are the names it serves.
func TestWorkerCollectorsMirrorBinary(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "worker", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cmd/worker: %v", err)
	}
	var got []string
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			name := exprString(call.Fun)
			if name == "" || name == "?" {
				return true
			}
			pkg, fn := name[:max(strings.LastIndex(name, "."), 0)], name[strings.LastIndex(name, ".")+1:]
			if (pkg == "collectors" && strings.HasPrefix(fn, "New")) || fn == "NewMetrics" {
				got = append(got, name)
			}
			return true
		})
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if want := sortedKeys(workerCollectors); !slices.Equal(got, want) {
		t.Errorf("cmd/worker registers %q; the metric inventory registers %q: update workerCollectors", got, want)
	}
}
