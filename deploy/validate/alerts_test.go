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
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
	sigsyaml "sigs.k8s.io/yaml"
)

// workerPod is one worker pod's series in an alert scenario: it serves them
// from time from until time to (0: to the end), then is gone (a staleness
// marker, as Prometheus writes when a target disappears).
type workerPod struct {
	name     string
	from, to time.Duration
	// series without the namespace and pod labels -> points: a value
	// ("3", "Inf") held, or "a+b" / "a-b" changing by b a step. Unset:
	// workerDefaults, and a refresh timestamp that keeps up with the clock.
	series map[string]string
}

type checkpoint struct {
	at     time.Duration
	firing []string           // exactly these alerts fire
	values map[string]float64 // and have these values
}

type alertScenario struct {
	name  string
	step  time.Duration // between samples and between rule evaluations
	pods  []workerPod
	check []checkpoint
}

// workerDefaults are the series every worker serves, at rest.
var workerDefaults = map[string]string{
	"qfetch_dead_letters":                                  "0",
	"qfetch_queue_batches":                                 "0",
	"qfetch_queue_in_flight_batches":                       "0",
	"qfetch_queue_max_in_flight":                           "2",
	"qfetch_worker_fleet_fault":                            "0",
	`qfetch_worker_batches_total{outcome="done",class=""}`: "0",
}

// load renders the scenario as a promqltest load command.
func (s alertScenario) load(end time.Duration) string {
	steps := int(end/s.step) + 1
	stepSec := int(s.step / time.Second)
	var b strings.Builder
	fmt.Fprintf(&b, "load %s\n", model.Duration(s.step))
	// Something unrelated, so that an empty scenario is a valid load.
	fmt.Fprintf(&b, "  up{job=\"other\"} 1x%d\n", steps-1)
	for _, p := range s.pods {
		from, to := int(p.from/s.step), int(p.to/s.step)
		if to == 0 {
			to = steps
		}
		series := map[string]string{
			"qfetch_status_refresh_timestamp_seconds": fmt.Sprintf("%d+%d", from*stepSec, stepSec),
		}
		for k, v := range workerDefaults {
			series[k] = v
		}
		for k, v := range p.series {
			series[k] = v
		}
		for _, k := range sortedKeys(series) {
			name, lbls, _ := strings.Cut(strings.TrimSuffix(k, "}"), "{")
			if lbls != "" {
				lbls += ","
			}
			fmt.Fprintf(&b, "  %s{%snamespace=\"qfetch\",pod=%q} ", name, lbls, p.name)
			if from > 0 {
				fmt.Fprintf(&b, "_x%d ", from)
			}
			if v := series[k]; v == "Inf" { // no expanding notation for it
				b.WriteString(strings.TrimSpace(strings.Repeat("Inf ", to-from)))
			} else {
				fmt.Fprintf(&b, "%sx%d", v, to-from-1)
			}
			if to < steps {
				b.WriteString(" stale")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestAlertScenarios evaluates the PrometheusRule the way promtool's rule
// unit tests do (Prometheus' rule manager over a test storage, every group
// in order at every step) on the situations the alerts are for, and on
// the ones they must stay quiet in: workers scaled to zero between runs, a
// fresh installation, several pods serving the same gauges.
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
	for _, sc := range []alertScenario{
		{
			name: "a run completes and the workers scale to zero",
			step: 5 * m,
			pods: []workerPod{{name: "w1", to: 65 * m, series: map[string]string{
				"qfetch_queue_batches":                                 "0",
				"qfetch_queue_in_flight_batches":                       "0",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1",
				"qfetch_last_complete_run_timestamp_seconds":           "0",
				`qfetch_runs{state="complete"}`:                        "1",
			}}},
			check: []checkpoint{{at: 30 * m}, {at: 2 * h}, {at: 5 * h}},
		},
		{
			name: "a worker dies with batches waiting and none comes back",
			step: 5 * m,
			pods: []workerPod{{name: "w1", to: 30 * m, series: map[string]string{
				"qfetch_queue_batches":                                 "8",
				"qfetch_queue_in_flight_batches":                       "2",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1",
			}}},
			check: []checkpoint{
				{at: 20 * m},
				{at: 40 * m},
				{at: 50 * m, firing: []string{"QfetchWorkersMissing"}, values: map[string]float64{"QfetchWorkersMissing": 10}},
			},
		},
		{
			name: "dead letters outlive the workers until one reports none",
			step: 5 * m,
			pods: []workerPod{
				{name: "w1", to: 30 * m, series: map[string]string{"qfetch_dead_letters": "3"}},
				{name: "w2", to: 30 * m, series: map[string]string{"qfetch_dead_letters": "3"}},
				{name: "w3", from: 11 * h, series: map[string]string{"qfetch_dead_letters": "0"}}, // 11 h: replayed
			},
			check: []checkpoint{
				{at: 0},
				{at: 10 * m, firing: []string{"QfetchDeadLetters"}, values: map[string]float64{"QfetchDeadLetters": 3}},
				{at: 10 * h, firing: []string{"QfetchDeadLetters"}},
				{at: 11*h + 10*m},
			},
		},
		{
			name: "fresh installation, nothing reports",
			step: 5 * m,
			check: []checkpoint{
				{at: 5 * h},
				{at: 6*h + 5*m, firing: []string{"QfetchStatusNotReported"}},
			},
		},
		{
			name: "fresh installation, the first run in progress",
			step: 5 * m,
			pods: []workerPod{{name: "w1", series: map[string]string{
				"qfetch_last_complete_run_age_seconds":                 "Inf",
				"qfetch_queue_batches":                                 "500-1",
				"qfetch_queue_in_flight_batches":                       "2",
				`qfetch_runs{state="fetching"}`:                        "1",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1",
			}}},
			check: []checkpoint{{at: 30 * m}, {at: 3 * h}},
		},
		{
			name: "no run completes for 26 h",
			step: 15 * m,
			pods: []workerPod{
				// Reports a completion at t=0, then the workers are gone.
				{name: "w1", to: h, series: map[string]string{"qfetch_last_complete_run_timestamp_seconds": "0"}},
			},
			check: []checkpoint{
				{at: 25 * h},
				{at: 26*h + 30*m, firing: []string{"QfetchNoCompleteRun"}},
				{at: 27*h + 15*m, firing: []string{"QfetchNoCompleteRun", "QfetchStatusNotReported"}},
			},
		},
		{
			name: "a run goes stale while its batches wait",
			step: 5 * m,
			pods: []workerPod{{name: "w1", to: 2 * h, series: map[string]string{
				`qfetch_runs{state="stale"}`:                           "1",
				"qfetch_queue_batches":                                 "5",
				"qfetch_queue_in_flight_batches":                       "0",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1",
			}}},
			check: []checkpoint{
				{at: 10 * m},
				{at: 30 * m, firing: []string{"QfetchRunStale"}},
				{at: 3 * h, firing: []string{"QfetchRunStale", "QfetchWorkersMissing"}},
			},
		},
		{
			name: "a fleet-wide fault",
			step: 5 * m,
			pods: []workerPod{{name: "w1", series: map[string]string{
				"qfetch_worker_fleet_fault": "1",
				"qfetch_queue_batches":      "40",
			}}},
			check: []checkpoint{
				{at: 10 * m},
				{at: 20 * m, firing: []string{"QfetchFleetFault"}},
				// No batch done in an hour, but the fault says why.
				{at: 2 * h, firing: []string{"QfetchFleetFault"}},
			},
		},
		{
			name: "at the cap with the queue growing",
			step: 5 * m,
			pods: []workerPod{
				{name: "w1", series: map[string]string{
					"qfetch_queue_batches":                                 "0+3",
					"qfetch_queue_in_flight_batches":                       "2",
					`qfetch_worker_batches_total{outcome="done",class=""}`: "0+2",
				}},
				{name: "w2", series: map[string]string{
					"qfetch_queue_batches":                                 "0+3",
					"qfetch_queue_in_flight_batches":                       "2",
					`qfetch_worker_batches_total{outcome="done",class=""}`: "0+2",
				}},
			},
			check: []checkpoint{{at: 50 * m}, {at: 70 * m, firing: []string{"QfetchWorkersAtCapLagGrowing"}}},
		},
		{
			name: "at the cap with the queue shrinking",
			step: 5 * m,
			pods: []workerPod{{name: "w1", series: map[string]string{
				"qfetch_queue_batches":                                 "200-1",
				"qfetch_queue_in_flight_batches":                       "2",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0+1",
			}}},
			check: []checkpoint{{at: 90 * m}},
		},
		{
			name: "below the cap with the queue growing",
			step: 5 * m,
			pods: []workerPod{{name: "w1", series: map[string]string{
				"qfetch_queue_batches":                                 "0+3",
				"qfetch_queue_in_flight_batches":                       "1",
				`qfetch_worker_batches_total{outcome="done",class=""}`: "0+2",
			}}},
			check: []checkpoint{{at: 2 * h}},
		},
		{
			name: "batches wait and none is done",
			step: 5 * m,
			pods: []workerPod{{name: "w1", series: map[string]string{
				"qfetch_queue_batches":                                        "10",
				"qfetch_queue_in_flight_batches":                              "2",
				`qfetch_worker_batches_total{outcome="done",class=""}`:        "7",
				`qfetch_worker_batches_total{outcome="delayed",class="busy"}`: "0+1",
			}}},
			check: []checkpoint{
				{at: 10 * m},
				{at: 20 * m, firing: []string{"QfetchNoProgress"}, values: map[string]float64{"QfetchNoProgress": 12}},
			},
		},
		{
			name: "a worker stops refreshing the run status",
			step: 5 * m,
			pods: []workerPod{
				{name: "w1", series: map[string]string{"qfetch_status_refresh_timestamp_seconds": "0"}},
				{name: "w2"},
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

func runAlertScenario(t *testing.T, sc alertScenario, ruleFile string, groupOrder []string) {
	for _, p := range sc.pods {
		if p.from%sc.step != 0 || p.to%sc.step != 0 {
			t.Fatalf("pod %s: from %s, to %s: not on a %s step", p.name, p.from, p.to, sc.step)
		}
	}
	var end time.Duration
	for _, c := range sc.check {
		if c.at%sc.step != 0 {
			t.Fatalf("checkpoint %s is not on a %s step", c.at, sc.step)
		}
		end = max(end, c.at)
	}
	ll, err := promqltest.NewLazyLoader(sc.load(end), promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promql,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, sc.load(end))
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
