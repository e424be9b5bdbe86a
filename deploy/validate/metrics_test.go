package validate

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/runstat"
)

// goCollectors are the client library's and qfetch_build_info, as every
// program that serves /metrics registers them.
var goCollectors = map[string]func(prometheus.Registerer){
	"app.RegisterBuildInfo":     app.RegisterBuildInfo,
	"collectors.NewGoCollector": func(r prometheus.Registerer) { r.MustRegister(collectors.NewGoCollector()) },
	"collectors.NewProcessCollector": func(r prometheus.Registerer) {
		r.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	},
}

// metricsCollectors are the constructors each program that serves /metrics
// fills its registry with, by the name it calls them;
// TestCollectorsMirrorBinaries holds them to the source.
var metricsCollectors = map[string]map[string]func(prometheus.Registerer){
	"worker": withGo(map[string]func(prometheus.Registerer){
		"fetch.NewMetrics":   func(r prometheus.Registerer) { fetch.NewMetrics(r) },
		"runstat.NewMetrics": func(r prometheus.Registerer) { runstat.NewMetrics(r) },
	}),
	// `qfetch exporter`: the run-level series and nothing of the workers'.
	"exporter": withGo(map[string]func(prometheus.Registerer){
		"runstat.NewMetrics": func(r prometheus.Registerer) { runstat.NewMetrics(r) },
	}),
}

// collectorSources is where each program registers them: every non-test
// file of a directory, or one function of one file.
var collectorSources = map[string]struct{ dir, file, fn string }{
	"worker":   {dir: "cmd/worker"},
	"exporter": {file: "cmd/qfetch/exporter.go", fn: "runExporter"},
}

func withGo(m map[string]func(prometheus.Registerer)) map[string]func(prometheus.Registerer) {
	for k, v := range goCollectors {
		m[k] = v
	}
	return m
}

// series is one name a worker's or the exporter's /metrics can carry: a
// metric family's name, or a histogram's or summary's _bucket, _sum and
// _count.
type series struct {
	family string
	typ    dto.MetricType
	from   string          // the constructor that registered it
	labels map[string]bool // nil: not known (a recording rule's output)
	by     map[string]bool // the programs that serve it: worker, exporter
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

// exportedSeries registers each program's collectors into a registry of its
// own, as the binaries do, and lists every series name they can expose, with
// the programs that serve it.
func exportedSeries(t *testing.T) map[string]series {
	t.Helper()
	out := map[string]series{}
	for _, program := range sortedKeys(metricsCollectors) {
		for name, s := range programSeries(t, program) {
			if o, ok := out[name]; ok {
				if o.typ != s.typ || o.from != s.from || !maps.Equal(o.labels, s.labels) {
					t.Fatalf("%s: %s %s %v in %s, %s %s %v elsewhere", name, s.typ, s.from, s.labels, program, o.typ, o.from, o.labels)
				}
				s = o
			} else {
				s.by = map[string]bool{}
			}
			s.by[program] = true
			out[name] = s
		}
	}
	return out
}

func programSeries(t *testing.T, program string) map[string]series {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	type origin struct {
		from string
		c    prometheus.Collector
	}
	var all []origin
	// Collectors behind a gate, registered here on their own so that
	// Gather sees them whether or not the gate is open.
	ungated := prometheus.NewPedanticRegistry()
	for _, from := range sortedKeys(metricsCollectors[program]) {
		rec := &recorder{Registerer: reg}
		metricsCollectors[program][from](rec)
		if len(rec.collectors) == 0 {
			t.Fatalf("%s: %s registered no collector", program, from)
		}
		for _, c := range rec.collectors {
			// A collector that serves others only once it knows their
			// values (runstat's gate) is inventoried through them.
			if g, ok := c.(interface{ Collectors() []prometheus.Collector }); ok {
				for _, inner := range g.Collectors() {
					all = append(all, origin{from, inner})
					ungated.MustRegister(inner)
				}
				continue
			}
			all = append(all, origin{from, c})
		}
	}
	// Types of the families that have series now; the others are Vecs
	// without children, typed by their Go type below.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering the %s's metrics: %v", program, err)
	}
	more, err := ungated.Gather()
	if err != nil {
		t.Fatalf("gathering the %s's gated metrics: %v", program, err)
	}
	gathered := map[string]dto.MetricType{}
	for _, mf := range append(mfs, more...) {
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
// alerts rely on, Vecs without children, histogram series, and which
// program serves what (the rules tell a worker being up by
// qfetch_worker_fleet_fault, the exporter by its refresh timestamp).
func TestExportedSeries(t *testing.T) {
	got := exportedSeries(t)
	both := []string{"exporter", "worker"}
	for name, want := range map[string]struct {
		typ    dto.MetricType
		labels []string
		by     []string
	}{
		"qfetch_worker_batches_total":                {dto.MetricType_COUNTER, []string{"outcome", "class"}, []string{"worker"}},
		"qfetch_worker_qualys_responses_total":       {dto.MetricType_COUNTER, []string{"status", "code"}, []string{"worker"}},
		"qfetch_worker_upload_seconds_bucket":        {dto.MetricType_HISTOGRAM, []string{"le"}, []string{"worker"}},
		"qfetch_worker_upload_seconds_count":         {dto.MetricType_HISTOGRAM, nil, []string{"worker"}},
		"qfetch_worker_fleet_fault":                  {dto.MetricType_GAUGE, nil, []string{"worker"}},
		"qfetch_last_complete_run_timestamp_seconds": {dto.MetricType_GAUGE, nil, both},
		"qfetch_last_complete_run_age_seconds":       {dto.MetricType_GAUGE, nil, both},
		"qfetch_kb_last_complete_timestamp_seconds":  {dto.MetricType_GAUGE, nil, both},
		"qfetch_kb_passes":                           {dto.MetricType_GAUGE, []string{"state"}, both},
		"qfetch_kb_pass_batches":                     {dto.MetricType_GAUGE, []string{"state"}, both},
		"qfetch_runs":                                {dto.MetricType_GAUGE, []string{"state"}, both},
		"qfetch_current_run":                         {dto.MetricType_GAUGE, []string{"measure"}, both},
		"qfetch_status_refresh_timestamp_seconds":    {dto.MetricType_GAUGE, nil, both},
		"qfetch_status_refresh_errors_total":         {dto.MetricType_COUNTER, nil, both},
		"qfetch_tables_incomplete_runs":              {dto.MetricType_GAUGE, nil, both},
		"process_resident_memory_bytes":              {dto.MetricType_GAUGE, nil, both},
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
		if by := sortedKeys(s.by); !slices.Equal(by, want.by) {
			t.Errorf("%s: served by %q, want %q", name, by, want.by)
		}
	}
	if _, ok := got["qfetch_worker_upload_seconds"]; ok {
		t.Error("a histogram's family name is not a series name")
	}
	for name, s := range got {
		if s.by["exporter"] && strings.HasPrefix(name, "qfetch_worker_") {
			t.Errorf("%s: a worker's series from the exporter", name)
		}
	}
	t.Logf("%d series names from %d programs", len(got), len(metricsCollectors))
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestCollectorsMirrorBinaries: the constructors cmd/worker and `qfetch
// exporter` call to fill their registries are the ones exportedSeries
// registers, so the names the rules and the dashboard are checked against
// are the names they serve.
func TestCollectorsMirrorBinaries(t *testing.T) {
	for _, program := range sortedKeys(metricsCollectors) {
		t.Run(program, func(t *testing.T) {
			src, ok := collectorSources[program]
			if !ok {
				t.Fatalf("no collectorSources entry for %s", program)
			}
			var files []string
			if src.dir != "" {
				all, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(src.dir), "*.go"))
				if err != nil || len(all) == 0 {
					t.Fatalf("%s: %v", src.dir, err)
				}
				for _, f := range all {
					if !strings.HasSuffix(f, "_test.go") {
						files = append(files, f)
					}
				}
			} else {
				files = []string{filepath.Join(repoRoot, filepath.FromSlash(src.file))}
			}
			var got []string
			for _, f := range files {
				af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
				if err != nil {
					t.Fatal(err)
				}
				var root ast.Node = af
				if src.fn != "" {
					root = nil
					for _, d := range af.Decls {
						if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && fd.Name.Name == src.fn {
							root = fd
						}
					}
					if root == nil {
						t.Fatalf("%s: no func %s", src.file, src.fn)
					}
				}
				ast.Inspect(root, func(n ast.Node) bool {
					call, ok := n.(*ast.CallExpr)
					if !ok {
						return true
					}
					name := exprString(call.Fun)
					if name == "" || name == "?" {
						return true
					}
					pkg, fn := name[:max(strings.LastIndex(name, "."), 0)], name[strings.LastIndex(name, ".")+1:]
					if (pkg == "collectors" && strings.HasPrefix(fn, "New")) || fn == "NewMetrics" || name == "app.RegisterBuildInfo" {
						got = append(got, name)
					}
					return true
				})
			}
			slices.Sort(got)
			got = slices.Compact(got)
			if want := sortedKeys(metricsCollectors[program]); !slices.Equal(got, want) {
				t.Errorf("%s registers %q; the metric inventory registers %q: update metricsCollectors", program, got, want)
			}
		})
	}
}
