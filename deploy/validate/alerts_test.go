package validate

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	sigsyaml "sigs.k8s.io/yaml"
)

// scenarioPod is one pod's series in an alert scenario: the exporter's or
// a worker's (the container label, as the PodMonitor sets it). It serves
// them from time from until time to (0: to the end), then is gone (a
// staleness marker, as Prometheus writes when a target disappears).
type scenarioPod struct {
	name      string
	container string // "exporter" or "worker"
	from, to  time.Duration
	// series without the namespace, pod and container labels -> values
	// (valueSpec), over the scenario's state and the defaults.
	series map[string]string
}

func exporterPod(name string, from, to time.Duration) scenarioPod {
	return scenarioPod{name: name, container: "exporter", from: from, to: to}
}

func workerPod(name string, from, to time.Duration, series map[string]string) scenarioPod {
	return scenarioPod{name: name, container: "worker", from: from, to: to, series: series}
}

type checkpoint struct {
	at     time.Duration
	firing []string           // exactly these alerts fire
	values map[string]float64 // and have these values
}

type alertScenario struct {
	name string
	step time.Duration // between samples and between rule evaluations
	// state is the run-level series (runstat's), as every pod serves them;
	// unset: stateDefaults.
	state map[string]string
	pods  []scenarioPod
	check []checkpoint
}

// stateDefaults is the system at rest: a run completed at time 0, nothing
// queued. qfetch_last_complete_run_age_seconds follows from the
// timestamp (+Inf without one), and each pod's refresh timestamp keeps up
// with the clock, unless a scenario sets them.
var stateDefaults = map[string]string{
	"qfetch_last_complete_run_timestamp_seconds": "0",
	"qfetch_dead_letters":                        "0",
	"qfetch_batches_lost":                        "0",
	"qfetch_tables_incomplete_runs":              "0",
	"qfetch_queue_batches":                       "0",
	"qfetch_queue_waiting_batches":               "0",
	"qfetch_queue_in_flight_batches":             "0",
	"qfetch_queue_max_in_flight":                 "2",
	`qfetch_runs{state="complete"}`:              "1",
}

// workerDefaults are the series a worker serves besides the run-level ones.
var workerDefaults = map[string]string{
	"qfetch_worker_fleet_fault":                            "0",
	"qfetch_worker_wedged":                                 "0",
	"qfetch_worker_jetstream_unavailable":                  "0",
	`qfetch_worker_fleet_paused{kind="outage"}`:            "0",
	`qfetch_worker_fleet_paused{kind="maintenance"}`:       "0",
	`qfetch_worker_batches_total{outcome="done",class=""}`: "0",
}

// valueSpec is a series' values: segments separated by ";", each
// "V[@AT]": from scenario time AT (the first: from the pod's start), V is
// a number ("Inf" too) held, "A+B" or "A-B" changing by B a step, or
// "none" (no sample: absent).
type valueSpec []struct {
	at          time.Duration
	none        bool
	base, delta float64
}

func parseValueSpec(spec string) (valueSpec, error) {
	var out valueSpec
	for i, seg := range strings.Split(spec, ";") {
		seg = strings.TrimSpace(seg)
		v, at, hasAt := strings.Cut(seg, "@")
		var s struct {
			at          time.Duration
			none        bool
			base, delta float64
		}
		if hasAt {
			d, err := time.ParseDuration(at)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", seg, err)
			}
			s.at = d
		} else if i > 0 {
			return nil, fmt.Errorf("%q: every segment but the first needs @time", seg)
		}
		if i > 0 && s.at <= out[i-1].at {
			return nil, fmt.Errorf("%q: segments out of order", spec)
		}
		if v == "none" {
			s.none = true
			out = append(out, s)
			continue
		}
		a, b, sign := v, "0", 1.0
		if j := strings.LastIndexAny(v, "+-"); j > 0 && v[j-1] != 'e' {
			a, b = v[:j], v[j+1:]
			if v[j] == '-' {
				sign = -1
			}
		}
		var err error
		if s.base, err = strconv.ParseFloat(a, 64); err != nil {
			return nil, fmt.Errorf("%q: %w", seg, err)
		}
		if s.delta, err = strconv.ParseFloat(b, 64); err != nil {
			return nil, fmt.Errorf("%q: %w", seg, err)
		}
		s.delta *= sign
		out = append(out, s)
	}
	return out, nil
}

// at is the value at scenario time t for a pod that started at from.
func (vs valueSpec) at(t, from, step time.Duration) (float64, bool) {
	i := 0
	for j := range vs {
		if vs[j].at <= t {
			i = j
		}
	}
	s := vs[i]
	if s.none {
		return 0, false
	}
	start := max(s.at, from)
	return s.base + s.delta*float64((t-start)/step), true
}

// podSeries are a pod's series name -> spec: defaults, the scenario's
// state, the pod's own.
func (s alertScenario) podSeries(p scenarioPod) map[string]string {
	out := map[string]string{}
	for k, v := range stateDefaults {
		out[k] = v
	}
	for k, v := range s.state {
		out[k] = v
	}
	if p.container == "worker" {
		for k, v := range workerDefaults {
			out[k] = v
		}
	}
	for k, v := range p.series {
		out[k] = v
	}
	return out
}

// load renders the scenario as a promqltest load command, every sample
// written out.
func (s alertScenario) load(t *testing.T, end time.Duration) string {
	t.Helper()
	steps := int(end/s.step) + 1
	var b strings.Builder
	fmt.Fprintf(&b, "load %s\n", model.Duration(s.step))
	// Something unrelated, so that an empty scenario is a valid load.
	fmt.Fprintf(&b, "  up{job=\"other\"} 1x%d\n", steps-1)
	fmtValue := func(v float64) string {
		if math.IsInf(v, 1) {
			return "Inf"
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	for _, p := range s.pods {
		series := s.podSeries(p)
		specs := map[string]valueSpec{}
		for k, v := range series {
			vs, err := parseValueSpec(v)
			if err != nil {
				t.Fatalf("pod %s: %s: %v", p.name, k, err)
			}
			specs[k] = vs
		}
		_, setAge := series["qfetch_last_complete_run_age_seconds"]
		_, setRefresh := series["qfetch_status_refresh_timestamp_seconds"]
		names := sortedKeys(series)
		if !setAge {
			names = append(names, "qfetch_last_complete_run_age_seconds")
		}
		if !setRefresh {
			names = append(names, "qfetch_status_refresh_timestamp_seconds")
		}
		slices.Sort(names)
		for _, k := range names {
			name, lbls, _ := strings.Cut(strings.TrimSuffix(k, "}"), "{")
			if lbls != "" {
				lbls += ","
			}
			fmt.Fprintf(&b, "  %s{%snamespace=\"qfetch\",pod=%q,container=%q}", name, lbls, p.name, p.container)
			for i := range steps {
				at := time.Duration(i) * s.step
				var v float64
				ok := true
				switch {
				case at < p.from || (p.to > 0 && at > p.to):
					b.WriteString(" _")
					continue
				case p.to > 0 && at == p.to:
					b.WriteString(" stale")
					continue
				case k == "qfetch_last_complete_run_age_seconds" && !setAge:
					var ts float64
					if ts, ok = specs["qfetch_last_complete_run_timestamp_seconds"].at(at, p.from, s.step); ok {
						v = at.Seconds() - ts
					} else {
						v, ok = math.Inf(1), true
					}
				case k == "qfetch_status_refresh_timestamp_seconds" && !setRefresh:
					v = at.Seconds()
				default:
					v, ok = specs[k].at(at, p.from, s.step)
				}
				if !ok {
					b.WriteString(" _")
					continue
				}
				b.WriteString(" " + fmtValue(v))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestAlertScenarios evaluates the PrometheusRule the way promtool's rule
// unit tests do (Prometheus' rule manager over a test storage, every group
// in order at every step) on the situations the alerts are for, and on
// the ones they must stay quiet in: workers scaled to zero between runs
// with the exporter alone reporting, a fresh installation, an exporter
// restart, several pods serving the same gauges.
func TestAlertScenarios(t *testing.T) {
	pr, _ := baseRules(t)
	ruleYAML, err := sigsyaml.Marshal(pr.Spec)
	if err != nil {
		t.Fatal(err)
	}
	ruleFile := filepath.Join(t.TempDir(), "qfetch.rules.yaml")
	if err := os.WriteFile(ruleFile, ruleYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	var groupOrder []string
	for _, g := range pr.Spec.Groups {
		groupOrder = append(groupOrder, g.Name)
	}
	h := time.Hour
	m := time.Minute
	exporter := exporterPod("exporter-1", 0, 0)
	for _, sc := range []alertScenario{
		{
			name: "runs every 6 h, workers only while one is fetched, the exporter always",
			step: 15 * m,
			state: map[string]string{
				// Completions at 1h, 7h, 13h, 19h, 25h; planned 30 min
				// before each.
				"qfetch_last_complete_run_timestamp_seconds": "none; 3600@1h; 25200@7h; 46800@13h; 68400@19h; 90000@25h",
				"qfetch_queue_batches":                       "0; 40-10@30m; 0@1h; 40-10@6h30m; 0@7h; 40-10@12h30m; 0@13h; 40-10@18h30m; 0@19h; 40-10@24h30m; 0@25h",
			},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 45*m, h+15*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+20"}),
				workerPod("w2", 6*h+45*m, 7*h+15*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+20"}),
				workerPod("w3", 12*h+45*m, 13*h+15*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+20"}),
				workerPod("w4", 18*h+45*m, 19*h+15*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+20"}),
				workerPod("w5", 24*h+45*m, 25*h+15*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+20"}),
			},
			check: []checkpoint{{at: 45 * m}, {at: 3 * h}, {at: 12 * h}, {at: 26*h + 30*m}, {at: 30 * h}},
		},
		{
			name: "a fresh installation whose planner never gets a run through",
			step: 15 * m,
			state: map[string]string{
				"qfetch_last_complete_run_timestamp_seconds": "none",
				`qfetch_runs{state="complete"}`:              "0",
			},
			pods: []scenarioPod{exporter},
			check: []checkpoint{
				{at: 6 * h},
				{at: 26 * h},
				{at: 26*h + 15*m, firing: []string{"QfetchNoCompleteRun"}, values: map[string]float64{"QfetchNoCompleteRun": math.Inf(1)}},
			},
		},
		{
			name: "a fresh installation, the first run in progress",
			step: 5 * m,
			state: map[string]string{
				"qfetch_last_complete_run_timestamp_seconds": "none",
				`qfetch_runs{state="complete"}`:              "0",
				`qfetch_runs{state="fetching"}`:              "1",
				"qfetch_queue_batches":                       "500-1",
				"qfetch_queue_in_flight_batches":             "0; 2@5m",
			},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 5*m, 0, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1"}),
			},
			check: []checkpoint{{at: 30 * m}, {at: 3 * h}},
		},
		{
			name:  "no exporter and no worker: nothing reports",
			step:  5 * m,
			check: []checkpoint{{at: 5 * m}, {at: 10 * m, firing: []string{"QfetchExporterDown"}}},
		},
		{
			name:  "the exporter is down while a worker runs: the worker's series keep the run alerts going",
			step:  5 * m,
			state: map[string]string{"qfetch_dead_letters": "2"},
			pods:  []scenarioPod{workerPod("w1", 0, 0, nil)},
			check: []checkpoint{
				{at: 5 * m, firing: []string{"QfetchDeadLetters"}},
				{at: 10 * m, firing: []string{"QfetchDeadLetters", "QfetchExporterDown"}, values: map[string]float64{"QfetchDeadLetters": 2}},
			},
		},
		{
			name: "the exporter dies between runs",
			step: 5 * m,
			state: map[string]string{
				"qfetch_dead_letters": "1",
			},
			pods: []scenarioPod{exporterPod("exporter-1", 0, h)},
			check: []checkpoint{
				{at: 50 * m, firing: []string{"QfetchDeadLetters"}},
				{at: h + 5*m},
				{at: h + 10*m, firing: []string{"QfetchExporterDown"}},
			},
		},
		{
			name: "the exporter is rolled out, then crashes and comes back",
			step: 5 * m,
			state: map[string]string{
				// A run queued at 2h, fetched by 2h30m.
				"qfetch_queue_batches":                       "0; 30-5@2h; 0@2h30m",
				"qfetch_queue_in_flight_batches":             "0; 2@2h; 0@2h30m",
				"qfetch_last_complete_run_timestamp_seconds": "0; 9000@2h30m",
			},
			pods: []scenarioPod{
				exporterPod("exporter-1", 0, h),
				exporterPod("exporter-2", 55*m, 2*h+5*m), // maxSurge 1: the new one first
				exporterPod("exporter-3", 2*h+10*m, 0),   // a crash: back in 5 min
				workerPod("w1", 2*h+5*m, 2*h+30*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1"}),
			},
			check: []checkpoint{{at: h}, {at: 2*h + 5*m}, {at: 2*h + 10*m}, {at: 3 * h}},
		},
		{
			name:  "a worker dies with batches waiting and none comes back",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "8", "qfetch_queue_in_flight_batches": "2"},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 30*m, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1"}),
			},
			check: []checkpoint{
				{at: 40 * m},
				{at: 45 * m, firing: []string{"QfetchWorkersMissing"}, values: map[string]float64{"QfetchWorkersMissing": 10}},
			},
		},
		{
			name: "dead letters: fire while they wait, clear at the exporter's next refresh after a drop, no worker needed",
			step: 5 * m,
			// Dropped at 2h with no run in flight.
			state: map[string]string{"qfetch_dead_letters": "3; 0@2h"},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 30*m, nil),
				workerPod("w2", 0, 30*m, nil),
			},
			check: []checkpoint{
				{at: 0},
				{at: 10 * m, firing: []string{"QfetchDeadLetters"}, values: map[string]float64{"QfetchDeadLetters": 3}},
				{at: h + 55*m, firing: []string{"QfetchDeadLetters"}},
				{at: 2 * h},
			},
		},
		{
			name: "no run completes for 26 h; then one with no hosts completes in the planner alone",
			step: 15 * m,
			// 27 h: the planner finds no host to fetch and completes the
			// run itself; no worker starts.
			state: map[string]string{"qfetch_last_complete_run_timestamp_seconds": "0; 97200@27h"},
			pods:  []scenarioPod{exporter},
			check: []checkpoint{
				{at: 25*h + 45*m},
				{at: 26*h + 30*m, firing: []string{"QfetchNoCompleteRun"}},
				{at: 27 * h},
			},
		},
		{
			name: "KnowledgeBase passes complete daily beside the runs: no alert",
			step: 30 * m,
			state: map[string]string{
				"qfetch_last_complete_run_timestamp_seconds": "0+1800",
				"qfetch_kb_last_complete_timestamp_seconds":  "0; 86400@24h; 172800@48h; 259200@72h",
				`qfetch_kb_passes{state="complete"}`:         "1; 2@24h; 3@48h",
				`qfetch_kb_passes{state="fetching"}`:         "0; 1@23h; 0@24h; 1@47h; 0@48h",
			},
			pods:  []scenarioPod{exporter},
			check: []checkpoint{{at: 23 * h}, {at: 47*h + 30*m}, {at: 71 * h}},
		},
		{
			name: "no KnowledgeBase pass completes for 2 days",
			step: 30 * m,
			state: map[string]string{
				"qfetch_last_complete_run_timestamp_seconds": "0+1800",
				"qfetch_kb_last_complete_timestamp_seconds":  "0; 180000@50h",
				`qfetch_kb_passes{state="complete"}`:         "1",
				`qfetch_kb_passes{state="fetching"}`:         "0; 1@24h",
			},
			pods: []scenarioPod{exporter},
			check: []checkpoint{
				{at: 47*h + 30*m},
				{at: 48*h + 30*m},
				{at: 49 * h, firing: []string{"QfetchNoCompleteKBPass"}},
				{at: 50*h + 30*m},
			},
		},
		{
			name: "KnowledgeBase passes open for 2 days, none ever completed",
			step: 30 * m,
			state: map[string]string{
				"qfetch_last_complete_run_timestamp_seconds": "0+1800",
				"qfetch_kb_last_complete_timestamp_seconds":  "none",
				`qfetch_kb_passes{state="complete"}`:         "0",
				`qfetch_kb_passes{state="fetching"}`:         "0; 1@2h",
			},
			pods: []scenarioPod{exporter},
			check: []checkpoint{
				{at: 49 * h},
				{at: 50*h + 30*m, firing: []string{"QfetchNoCompleteKBPass"}, values: map[string]float64{"QfetchNoCompleteKBPass": math.Inf(1)}},
			},
		},
		{
			name: "the KnowledgeBase step is off: no pass, no alert",
			step: 30 * m,
			state: map[string]string{
				"qfetch_last_complete_run_timestamp_seconds": "0+1800",
				`qfetch_kb_passes{state="complete"}`:         "0",
			},
			pods:  []scenarioPod{exporter},
			check: []checkpoint{{at: 72 * h}},
		},
		{
			name: "the queue is purged: its run's batches are lost, until the run drops out of the newest",
			step: 5 * m,
			state: map[string]string{
				"qfetch_batches_lost":         "0; 7@30m; 0@3h",
				`qfetch_runs{state="failed"}`: "0; 1@30m; 0@3h",
			},
			pods: []scenarioPod{exporter},
			check: []checkpoint{
				{at: 30 * m},
				{at: 40 * m, firing: []string{"QfetchBatchesLost"}, values: map[string]float64{"QfetchBatchesLost": 7}},
				{at: 3*h + 5*m},
			},
		},
		{
			name: "a complete run's tables stay incomplete until a rebuild",
			step: 5 * m,
			state: map[string]string{
				"qfetch_tables_incomplete_runs": "0; 1@1h; 0@3h",
			},
			pods: []scenarioPod{exporter},
			check: []checkpoint{
				{at: 1*h + 20*m},
				{at: 1*h + 40*m, firing: []string{"QfetchTablesIncomplete"}, values: map[string]float64{"QfetchTablesIncomplete": 1}},
				{at: 3*h + 5*m},
			},
		},
		{
			name: "a run goes stale while its batches wait",
			step: 5 * m,
			state: map[string]string{
				`qfetch_runs{state="stale"}`: "1",
				"qfetch_queue_batches":       "5",
			},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 2*h, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1"}),
			},
			check: []checkpoint{
				{at: 10 * m},
				{at: 15 * m, firing: []string{"QfetchRunStale"}},
				{at: 3 * h, firing: []string{"QfetchRunStale", "QfetchWorkersMissing"}},
			},
		},
		{
			name:  "a fleet-wide fault",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "40"},
			pods:  []scenarioPod{exporter, workerPod("w1", 0, 0, map[string]string{"qfetch_worker_fleet_fault": "1"})},
			check: []checkpoint{
				{at: 10 * m},
				{at: 20 * m, firing: []string{"QfetchFleetFault"}},
				// No batch done in an hour, but the fault says why.
				{at: 2 * h, firing: []string{"QfetchFleetFault"}},
			},
		},
		{
			name:  "a worker cannot dead-letter a message while another works on",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "40-1"},
			pods: []scenarioPod{exporter,
				workerPod("w1", 0, 0, map[string]string{"qfetch_worker_wedged": "0; 1@10m; 0@1h"}),
				workerPod("w2", 0, 0, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1"}),
			},
			check: []checkpoint{
				{at: 10 * m},
				{at: 20 * m, firing: []string{"QfetchWorkerWedged"}, values: map[string]float64{"QfetchWorkerWedged": 1}},
				{at: h + 10*m},
			},
		},
		{
			name:  "a JetStream cluster loses its quorum, then gets it back",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "40"},
			pods: []scenarioPod{exporter,
				workerPod("w1", 0, 0, map[string]string{
					"qfetch_worker_jetstream_unavailable":                  "0; 1@10m; 0@40m",
					`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1; 2@10m; 2+1@40m",
				}),
				workerPod("w2", 0, 0, map[string]string{"qfetch_worker_jetstream_unavailable": "0; 1@10m; 0@40m"}),
			},
			check: []checkpoint{
				{at: 10 * m},
				{at: 20 * m, firing: []string{"QfetchJetStreamUnavailable"}, values: map[string]float64{"QfetchJetStreamUnavailable": 1}},
				{at: 45 * m},
			},
		},
		{
			name:  "an outage pauses the fleet",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "40"},
			pods: []scenarioPod{exporter, workerPod("w1", 0, 0, map[string]string{
				`qfetch_worker_fleet_paused{kind="outage"}`: "1",
			})},
			check: []checkpoint{
				{at: 20 * m},
				{at: 40 * m, firing: []string{"QfetchFleetPaused"}},
				// No batch done in two hours, but the pause says why.
				{at: 2 * h, firing: []string{"QfetchFleetPaused"}},
			},
		},
		{
			name:  "maintenance over by itself",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "40"},
			pods: []scenarioPod{exporter, workerPod("w1", 0, 0, map[string]string{
				`qfetch_worker_fleet_paused{kind="maintenance"}`:       "1; 0@20m",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0; 0+1@20m",
			})},
			check: []checkpoint{{at: 15 * m}, {at: 45 * m}},
		},
		{
			name:  "the rate budget is short for the open run",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "300", "qfetch_queue_in_flight_batches": "2"},
			pods: []scenarioPod{exporter, workerPod("w1", 0, 0, map[string]string{
				// 300 calls an hour allowed, 50 left, and 12 calls a
				// minute (720 an hour): the window runs dry before the run.
				"qfetch_worker_qualys_rate_limit":                             "300",
				"qfetch_worker_qualys_rate_window_seconds":                    "3600",
				"qfetch_worker_qualys_rate_remaining":                         "50",
				`qfetch_worker_qualys_responses_total{status="200",code="0"}`: "0+60",
				`qfetch_worker_batches_total{outcome="done",class=""}`:        "0+60",
			})},
			check: []checkpoint{{at: 20 * m}, {at: 45 * m, firing: []string{"QfetchRateBudgetShort"}}},
		},
		{
			name:  "the rate budget is short, with the open run's batches waiting out back-offs",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_waiting_batches": "300"},
			pods: []scenarioPod{exporter, workerPod("w1", 0, 0, map[string]string{
				"qfetch_worker_qualys_rate_limit":                             "300",
				"qfetch_worker_qualys_rate_window_seconds":                    "3600",
				"qfetch_worker_qualys_rate_remaining":                         "50",
				`qfetch_worker_qualys_responses_total{status="200",code="0"}`: "0+60",
				`qfetch_worker_batches_total{outcome="done",class=""}`:        "0+60",
			})},
			check: []checkpoint{{at: 20 * m}, {at: 45 * m, firing: []string{"QfetchRateBudgetShort"}}},
		},
		{
			name:  "the rate budget is enough at the current pace",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "300", "qfetch_queue_in_flight_batches": "2"},
			pods: []scenarioPod{exporter, workerPod("w1", 0, 0, map[string]string{
				// 50 left, but the fleet calls slower than the window
				// refills (6 an hour against 300).
				"qfetch_worker_qualys_rate_limit":                             "300",
				"qfetch_worker_qualys_rate_window_seconds":                    "3600",
				"qfetch_worker_qualys_rate_remaining":                         "50",
				`qfetch_worker_qualys_responses_total{status="200",code="0"}`: "0+0.5",
				`qfetch_worker_batches_total{outcome="done",class=""}`:        "0+0.5",
			})},
			check: []checkpoint{{at: 45 * m}},
		},
		{
			name:  "at the cap with the queue growing",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "0+3", "qfetch_queue_in_flight_batches": "2"},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 0, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+2"}),
				workerPod("w2", 0, 0, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+2"}),
			},
			check: []checkpoint{{at: 50 * m}, {at: 70 * m, firing: []string{"QfetchWorkersAtCapLagGrowing"}}},
		},
		{
			name:  "at the cap with the queue shrinking",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "200-1", "qfetch_queue_in_flight_batches": "2"},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 0, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1"}),
			},
			check: []checkpoint{{at: 90 * m}},
		},
		{
			name:  "below the cap with the queue growing",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "0+3", "qfetch_queue_in_flight_batches": "1"},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 0, map[string]string{`qfetch_worker_batches_total{outcome="done",class=""}`: "0+2"}),
			},
			check: []checkpoint{{at: 2 * h}},
		},
		{
			name:  "batches wait, workers are up, and none is done",
			step:  5 * m,
			state: map[string]string{"qfetch_queue_batches": "10", "qfetch_queue_in_flight_batches": "2"},
			pods: []scenarioPod{
				exporter,
				workerPod("w1", 0, 0, map[string]string{
					`qfetch_worker_batches_total{outcome="done",class=""}`:        "7",
					`qfetch_worker_batches_total{outcome="delayed",class="busy"}`: "0+1",
				}),
			},
			check: []checkpoint{
				{at: 10 * m},
				{at: 20 * m, firing: []string{"QfetchNoProgress"}, values: map[string]float64{"QfetchNoProgress": 12}},
			},
		},
		{
			name: "the exporter stops refreshing the run status",
			step: 5 * m,
			pods: []scenarioPod{
				{name: "exporter-1", container: "exporter", series: map[string]string{"qfetch_status_refresh_timestamp_seconds": "0"}},
				workerPod("w1", 0, 0, nil),
			},
			check: []checkpoint{{at: 10 * m}, {at: 20 * m, firing: []string{"QfetchStatusRefreshFailing"}}},
		},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			runAlertScenario(t, sc, ruleFile, groupOrder)
		})
	}
}

// TestScenarioSeriesExist: the series the scenarios feed the rules are
// ones the pods serve: run-level state from runstat, a worker's own
// series only on workers (so the scenarios cannot hide a rule that reads
// a worker's series from the exporter).
func TestScenarioSeriesExist(t *testing.T) {
	known := exportedSeries(t)
	check := func(where, k, program string) {
		name, _, _ := strings.Cut(k, "{")
		s, ok := known[name]
		switch {
		case !ok:
			t.Errorf("%s: %s is not exported", where, name)
		case program != "" && !s.by[program]:
			t.Errorf("%s: the %s does not serve %s", where, program, name)
		case program == "" && s.from != "runstat.NewMetrics":
			t.Errorf("%s: %s is not a run-level series", where, name)
		}
	}
	for k := range stateDefaults {
		check("stateDefaults", k, "")
	}
	for k := range workerDefaults {
		check("workerDefaults", k, "worker")
	}
	for _, k := range []string{"qfetch_last_complete_run_age_seconds", "qfetch_status_refresh_timestamp_seconds"} {
		check("derived", k, "exporter")
	}
}

func runAlertScenario(t *testing.T, sc alertScenario, ruleFile string, groupOrder []string) {
	for _, p := range sc.pods {
		if p.from%sc.step != 0 || p.to%sc.step != 0 {
			t.Fatalf("pod %s: from %s, to %s: not on a %s step", p.name, p.from, p.to, sc.step)
		}
		if p.container != "exporter" && p.container != "worker" {
			t.Fatalf("pod %s: container %q", p.name, p.container)
		}
	}
	var end time.Duration
	for _, c := range sc.check {
		if c.at%sc.step != 0 {
			t.Fatalf("checkpoint %s is not on a %s step", c.at, sc.step)
		}
		end = max(end, c.at)
	}
	load := sc.load(t, end)
	ll, err := promqltest.NewLazyLoader(load, promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promql,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, load)
	}
	defer ll.Close()
	ll.SubqueryInterval = sc.step
	m := rules.NewManager(&rules.ManagerOptions{
		QueryFunc:            rules.EngineQueryFunc(ll.QueryEngine(), ll.Storage()),
		AppendableV2:         ll.Storage(),
		Queryable:            ll.Storage(),
		Context:              context.Background(),
		NotifyFunc:           func(context.Context, string, ...*rules.Alert) {},
		Logger:               slog.New(slog.DiscardHandler),
		Parser:               promql,
		NameValidationScheme: model.LegacyValidation,
	})
	loaded, errs := m.LoadGroups(sc.step, labels.EmptyLabels(), "", nil, false, ruleFile)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	groups := make([]*rules.Group, 0, len(loaded))
	for _, g := range loaded {
		groups = append(groups, g)
	}
	sort.Slice(groups, func(i, j int) bool {
		return slices.Index(groupOrder, groups[i].Name()) < slices.Index(groupOrder, groups[j].Name())
	})
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*rules.AlertingRule); ok {
				ar.SetRestored(true)
			}
		}
	}
	start := time.Unix(0, 0).UTC()
	next := 0
	for at := time.Duration(0); at <= end; at += sc.step {
		ts := start.Add(at)
		ll.WithSamplesTill(ts, func(err error) {
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range groups {
				g.Eval(ll.Context(), ts)
				for _, r := range g.Rules() {
					if err := r.LastError(); err != nil {
						t.Fatalf("at %s: rule %s: %v", at, r.Name(), err)
					}
				}
			}
		})
		for next < len(sc.check) && sc.check[next].at == at {
			c := sc.check[next]
			next++
			got := map[string]float64{}
			for _, g := range groups {
				for _, r := range g.Rules() {
					ar, ok := r.(*rules.AlertingRule)
					if !ok {
						continue
					}
					for _, a := range ar.ActiveAlerts() {
						if a.State == rules.StateFiring {
							got[ar.Name()] = math.Max(got[ar.Name()], a.Value)
						}
					}
				}
			}
			names := sortedKeys(got)
			want := slices.Clone(c.firing)
			slices.Sort(want)
			if !slices.Equal(names, want) {
				t.Errorf("at %s: firing %q, want %q", at, names, want)
			}
			for alert, v := range c.values {
				if got[alert] != v {
					t.Errorf("at %s: %s value %v, want %v", at, alert, got[alert], v)
				}
			}
		}
	}
	if next != len(sc.check) {
		t.Fatalf("checkpoints out of order: %d of %d checked", next, len(sc.check))
	}
}
