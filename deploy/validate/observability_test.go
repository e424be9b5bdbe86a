package validate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/qfetch/qfetch/internal/config"
)

const (
	dashboardFile  = "../k8s/base/grafana-dashboard.json"
	dashboardLabel = "grafana_dashboard" // Grafana's dashboard sidecar looks for it
)

// requiredAlerts are the alerts the issue asks for by what they detect.
var requiredAlerts = []string{
	"QfetchNoCompleteRun",          // no complete run in 26 h
	"QfetchDeadLetters",            // dead letters present
	"QfetchFleetFault",             // a fleet-wide fault lasting 15 min
	"QfetchWorkersAtCapLagGrowing", // workers at the fleet cap, queue lag growing
	"QfetchRunStale",               // a run open too long
	"QfetchWorkersMissing",         // work waiting, no worker running
	"QfetchExporterDown",           // the exporter's run-level series absent
	"QfetchStatusRefreshFailing",   // the run-level series are out of date
	"QfetchFleetPaused",            // the fleet paused as one (outage, maintenance)
	"QfetchRateBudgetShort",        // Qualys' rate budget cannot finish the open run at the current pace
	"QfetchWorkerWedged",           // a batch message that cannot be dead-lettered (a worker wedged)
	"QfetchTablesIncomplete",       // a complete run's analyst tables still missing after the grace
}

var severities = []string{"critical", "warning", "info"}

// parseRules validates a PrometheusRule the way the Prometheus operator
// does before it writes Prometheus' rule files: its spec as YAML through
// Prometheus' rulefmt.Parse (unknown fields refused, every expression
// through the PromQL parser, annotations through the template parser),
// with the classic metric name rules so Prometheus 2 loads them too.
func parseRules(t *testing.T, r *monitoringv1.PrometheusRule) *rulefmt.RuleGroups {
	t.Helper()
	b, err := sigsyaml.Marshal(r.Spec)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(b, false, model.LegacyValidation, promql, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatalf("PrometheusRule %s does not load:\n%v", r.Name, errors.Join(errs...))
	}
	return groups
}

func baseRules(t *testing.T) (*monitoringv1.PrometheusRule, *rulefmt.RuleGroups) {
	t.Helper()
	rules := objectsOf[*monitoringv1.PrometheusRule](buildBase(t))
	if len(rules) != 1 {
		t.Fatalf("base: want one PrometheusRule, got %d", len(rules))
	}
	return rules[0], parseRules(t, rules[0])
}

// recordedBy lists the recording rules: name and expression.
func recordedBy(t *testing.T, groups *rulefmt.RuleGroups) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record == "" {
				continue
			}
			if _, dup := out[r.Record]; dup {
				t.Errorf("recording rule %s defined twice", r.Record)
			}
			out[r.Record] = r.Expr
		}
	}
	return out
}

var recordName = regexp.MustCompile(`^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$`)

func TestPrometheusRules(t *testing.T) {
	pr, groups := baseRules(t)
	recorded := recordedBy(t, groups)
	known := withRecorded(t, exportedSeries(t), recorded)
	used := map[string]bool{}
	alerts := map[string]bool{}
	var nAlerts, nRecords int
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			for _, err := range checkExpr(known, r.Expr) {
				t.Errorf("%s/%s: %v", g.Name, name, err)
			}
			for n := range known {
				if known[n].from == "recording rule" && regexp.MustCompile(`\b`+regexp.QuoteMeta(n)+`\b`).MatchString(r.Expr) {
					used[n] = true
				}
			}
			if r.Record != "" {
				nRecords++
				if !recordName.MatchString(r.Record) {
					t.Errorf("%s/%s: a recorded name is level:metric:operations", g.Name, r.Record)
				}
				continue
			}
			nAlerts++
			if alerts[r.Alert] {
				t.Errorf("%s: alert defined twice", r.Alert)
			}
			alerts[r.Alert] = true
			checkAlert(t, g.Name, r)
		}
	}
	for _, want := range requiredAlerts {
		if !alerts[want] {
			t.Errorf("no alert %s", want)
		}
	}
	for n := range recorded {
		if !used[n] {
			t.Errorf("recording rule %s: no alert uses it", n)
		}
	}
	t.Logf("PrometheusRule %s: %d groups, %d alerts, %d recording rules: expressions checked",
		pr.Name, len(groups.Groups), nAlerts, nRecords)
}

func checkAlert(t *testing.T, group string, r rulefmt.Rule) {
	t.Helper()
	where := group + "/" + r.Alert
	if !regexp.MustCompile(`^Qfetch[A-Z][A-Za-z]+$`).MatchString(r.Alert) {
		t.Errorf("%s: alert names are QfetchCamelCase", where)
	}
	if !slices.Contains(severities, r.Labels["severity"]) {
		t.Errorf("%s: severity %q, want one of %q", where, r.Labels["severity"], severities)
	}
	// Long enough to ride out a scrape or a refresh gone missing, short
	// enough to matter.
	if f := time.Duration(r.For); f < time.Minute || f > 6*time.Hour {
		t.Errorf("%s: for %s, want 1m..6h", where, f)
	}
	for _, a := range []string{"summary", "description"} {
		if strings.TrimSpace(r.Annotations[a]) == "" {
			t.Errorf("%s: no %s annotation", where, a)
		}
	}
	for a := range r.Annotations {
		if !slices.Contains([]string{"summary", "description", "runbook_url"}, a) {
			t.Errorf("%s: annotation %q; Alertmanager templates expect summary and description", where, a)
		}
	}
	if len(qfetchCommands(r.Annotations["description"])) == 0 {
		t.Errorf("%s: the description names no qfetch command to run", where)
	}
}

// The dev overlay drops the operator's kinds (kind has no CRDs for them);
// where the PodMonitors are, the PrometheusRule is too, and every pod that
// serves /metrics (workers, the exporter) is scraped by exactly one
// PodMonitor, on a port its container declares.
func TestMonitoringObjectsTogether(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		pms := objectsOf[*monitoringv1.PodMonitor](o)
		pr := len(objectsOf[*monitoringv1.PrometheusRule](o))
		if (len(pms) > 0) != (pr > 0) {
			t.Fatalf("%d PodMonitor(s), %d PrometheusRule(s): scraped without alerts, or alerts on nothing", len(pms), pr)
		}
		if len(pms) == 0 {
			return
		}
		selected := map[string]int{}
		for _, q := range qfetchContainers(t, o) {
			if _, serves := listenVars[q.binary]; !serves {
				continue
			}
			var by []string
			for _, pm := range pms {
				if !labelsMatch(&pm.Spec.Selector, q.pod.labels) {
					continue
				}
				selected[pm.Name]++
				by = append(by, pm.Name)
				for _, ep := range pm.Spec.PodMetricsEndpoints {
					if ep.Port == nil || !hasPort(q.c, intstr.FromString(*ep.Port)) {
						t.Errorf("PodMonitor %s: endpoint port %v is not a port of %s %s", pm.Name, ep.Port, q.pod.owner, q.c.Name)
					}
					if ep.Path != "" && ep.Path != "/metrics" {
						t.Errorf("PodMonitor %s: path %q, want /metrics", pm.Name, ep.Path)
					}
				}
			}
			if len(by) != 1 {
				t.Errorf("%s (%s): scraped by PodMonitors %q, want exactly one", q.pod.owner, q.binary, by)
			}
		}
		for _, pm := range pms {
			if selected[pm.Name] == 0 {
				t.Errorf("PodMonitor %s selects no qfetch pod", pm.Name)
			}
		}
	})
}

// TestRulesContainerLabels: a rule that tells the exporter's or a worker's
// series by the container label (as the PodMonitor sets it) names a
// container of the base that runs that program and serves that series.
func TestRulesContainerLabels(t *testing.T) {
	_, groups := baseRules(t)
	known := exportedSeries(t)
	programOf := map[string]string{} // container name -> program
	for _, p := range buildBase(t).pods() {
		for _, c := range containers(p.spec) {
			if b := binary(c); b != "" {
				if prev, ok := programOf[c.Name]; ok && prev != b {
					t.Errorf("container name %s runs both %s and %s: the container label cannot tell them apart", c.Name, prev, b)
				}
				programOf[c.Name] = b
			}
		}
	}
	var n int
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			e, err := promql.ParseExpr(r.Expr)
			if err != nil {
				continue // TestPrometheusRules says so
			}
			parser.Inspect(e, func(node parser.Node, _ []parser.Node) error {
				vs, ok := node.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				for _, m := range vs.LabelMatchers {
					if m.Name != "container" {
						continue
					}
					n++
					program, ok := programOf[m.Value]
					if m.Type != labels.MatchEqual || !ok {
						t.Errorf("%s: %s: container %s %q is no qfetch container of the base (%v)", r.Alert+r.Record, vs, m.Type, m.Value, programOf)
						continue
					}
					if s, ok := known[vs.Name]; ok && !s.by[program] {
						t.Errorf("%s: %s: the %s does not serve %s", r.Alert+r.Record, vs, program, vs.Name)
					}
				}
				return nil
			})
		}
	}
	if n == 0 {
		t.Error("no rule tells the exporter's series apart: QfetchExporterDown needs container=\"exporter\"")
	}
}

// qfetchCommands are the `qfetch ...` command lines quoted in a text.
func qfetchCommands(text string) []string {
	var out []string
	for _, m := range regexp.MustCompile("`(qfetch [^`]*)`").FindAllStringSubmatch(text, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestDocumentedCommandsExist runs every qfetch command line an alert or a
// dashboard panel tells the operator to run with -h: the command (and verb)
// must exist and take the flags quoted.
func TestDocumentedCommandsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/qfetch")
	}
	_, groups := baseRules(t)
	cmds := map[string]string{} // command line -> where
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			for _, text := range r.Annotations {
				for _, c := range qfetchCommands(text) {
					cmds[c] = "alert " + r.Alert
				}
			}
		}
	}
	d := readDashboard(t)
	for _, p := range d.allPanels() {
		for _, c := range qfetchCommands(p.Description) {
			cmds[c] = "panel " + p.Title
		}
	}
	if len(cmds) == 0 {
		t.Fatal("no qfetch command quoted anywhere")
	}
	qfetchBin := goBuild(t, "./cmd/qfetch")
	for _, line := range sortedKeys(cmds) {
		var words, flags []string
		for _, f := range strings.Fields(line)[1:] {
			switch {
			case strings.HasPrefix(f, "-"):
				flags = append(flags, "-"+strings.TrimLeft(f, "-"))
			case f == strings.ToLower(f) && len(flags) == 0:
				words = append(words, f)
			}
		}
		cmd := exec.Command(qfetchBin, append(slices.Clone(words), "-h")...)
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, config.Prefix+"_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		usage := out.String()
		if err != nil || !strings.Contains(usage, "qfetch "+strings.Join(words, " ")) {
			t.Errorf("%s quotes `%s`: `qfetch %s -h` does not know it (%v):\n%s", cmds[line], line, strings.Join(words, " "), err, usage)
			continue
		}
		for _, f := range flags {
			// A flag's line: "  -n, --limit int" or "      --run string".
			if !regexp.MustCompile(`(?m)^\s+(-\w, )?-?` + regexp.QuoteMeta(f) + `\b`).MatchString(usage) {
				t.Errorf("%s quotes `%s`: qfetch %s has no flag %s", cmds[line], line, strings.Join(words, " "), f)
			}
		}
	}
	t.Logf("%d qfetch command lines checked", len(cmds))
}

// dashboard is the part of a Grafana dashboard the checks read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Definition string          `json:"definition"`
			Options    []struct {
				Value string `json:"value"`
			} `json:"options"`
		} `json:"list"`
	} `json:"templating"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	GridPos     struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

func (d *dashboard) allPanels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func readDashboard(t *testing.T) *dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// grafanaVar is a variable reference in Grafana's three syntaxes.
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

// grafanaBuiltins are Grafana's own variables, as values PromQL accepts
// where they may appear.
var grafanaBuiltins = map[string]string{
	"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
	"__interval_ms": "60000", "__range_ms": "3600000", "__range_s": "3600",
}

// substitute replaces Grafana's variables with values PromQL parses: a
// duration for the interval built-ins, the first option of an interval
// variable, a plain string for label values. A variable the dashboard does
// not define is an error.
func (d *dashboard) substitute(expr string) (string, error) {
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "interval":
			if len(v.Options) > 0 {
				vars[v.Name] = v.Options[0].Value
			}
		case "datasource":
			// A data source is no value in an expression.
		default:
			vars[v.Name] = "x"
		}
	}
	var bad []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		sm := grafanaVar.FindStringSubmatch(m)
		name := sm[1] + sm[2] + sm[3]
		if v, ok := grafanaBuiltins[name]; ok {
			return v
		}
		if v, ok := vars[name]; ok {
			return v
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("undefined variables %q", bad)
	}
	return out, nil
}

var labelValuesQuery = regexp.MustCompile(`^label_values\((?:(.+),\s*)?(\w+)\)$`)

func TestGrafanaDashboard(t *testing.T) {
	d := readDashboard(t)
	_, groups := baseRules(t)
	known := withRecorded(t, exportedSeries(t), recordedBy(t, groups))
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: all three are needed", d.UID, d.Title, d.SchemaVersion)
	}
	// Data sources: the ${datasource} variable everywhere, no installation's
	// data source UID.
	var hasDSVar bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			hasDSVar = true
		}
	}
	if !hasDSVar {
		t.Error(`no variable "datasource" of type datasource for prometheus`)
	}
	var raw any
	b, _ := os.ReadFile(dashboardFile)
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	walkJSON(raw, "", func(path string, v any) {
		if !strings.HasSuffix(path, ".datasource") {
			return
		}
		ds, ok := v.(map[string]any)
		if !ok || ds["uid"] != "${datasource}" || ds["type"] != "prometheus" {
			t.Errorf("%s = %v, want {type: prometheus, uid: ${datasource}}", path, v)
		}
	})
	// Panels: unique ids, on the 24-column grid, every query a PromQL
	// expression over exported metrics.
	ids := map[int]bool{}
	var nExprs int
	for _, p := range d.allPanels() {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("%s: id missing or not unique", where)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v off the 24-column grid", where, g)
		}
		if p.Title == "" {
			t.Errorf("%s: no title", where)
		}
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		if p.Description == "" {
			t.Errorf("%s: no description (what it shows, what to do)", where)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		for _, tg := range p.Targets {
			expr, err := d.substitute(tg.Expr)
			if err == nil && strings.TrimSpace(expr) == "" {
				err = errors.New("empty expression")
			}
			if err != nil {
				t.Errorf("%s query %s: %v", where, tg.RefID, err)
				continue
			}
			nExprs++
			for _, err := range checkExpr(known, expr) {
				t.Errorf("%s query %s: %v", where, tg.RefID, err)
			}
		}
	}
	// Query variables: label_values(selector, label).
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		var obj struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &obj) == nil && obj.Query != "" {
			q = obj.Query
		}
		m := labelValuesQuery.FindStringSubmatch(strings.TrimSpace(q))
		if m == nil || m[1] == "" {
			t.Errorf("variable %s: %q: want label_values(metric, label)", v.Name, q)
			continue
		}
		nExprs++
		sel := fmt.Sprintf("%s{%s!=\"\"}", m[1], m[2])
		if strings.Contains(m[1], "{") {
			sel = m[1]
		}
		for _, err := range checkExpr(known, sel) {
			t.Errorf("variable %s: %v", v.Name, err)
		}
	}
	// Client-side `kubectl apply` keeps a copy in an annotation, at most
	// 256 KiB in all.
	if len(b) > 200<<10 {
		t.Errorf("%s: %d bytes; kubectl apply's last-applied annotation holds 256 KiB", dashboardFile, len(b))
	}
	t.Logf("dashboard %q: %d panels, %d expressions checked", d.Title, len(ids), nExprs)
}

func walkJSON(v any, path string, f func(string, any)) {
	f(path, v)
	switch x := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(x) {
			walkJSON(x[k], path+"."+k, f)
		}
	case []any:
		for i, e := range x {
			walkJSON(e, fmt.Sprintf("%s[%d]", path, i), f)
		}
	}
}

// TestDashboardConfigMap: every overlay ships the dashboard file, as is, in
// a ConfigMap Grafana's sidecar picks up.
func TestDashboardConfigMap(t *testing.T) {
	want, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		var found int
		for _, cm := range objectsOf[*corev1.ConfigMap](o) {
			if cm.Labels[dashboardLabel] != "1" {
				continue
			}
			found++
			if len(cm.Data) != 1 {
				t.Errorf("ConfigMap %s: %d keys, want the dashboard alone", cm.Name, len(cm.Data))
			}
			for k, v := range cm.Data {
				if !strings.HasSuffix(k, ".json") || v != string(want) {
					t.Errorf("ConfigMap %s: key %s is not %s", cm.Name, k, filepath.Base(dashboardFile))
				}
			}
		}
		if found != 1 {
			t.Errorf("%d ConfigMaps labelled %s=1, want 1", found, dashboardLabel)
		}
	})
}
