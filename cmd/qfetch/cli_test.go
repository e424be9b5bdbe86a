package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// qfetch runs a command line as main would.
func qfetch(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errs strings.Builder
	code = dispatch(ctx, args, &out, &errs)
	return code, out.String(), errs.String()
}

// commandPaths lists every command of the tree as its words after qfetch,
// the hidden ones left out.
func commandPaths() [][]string {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			if sub.Hidden {
				continue
			}
			p := append(append([]string{}, path...), sub.Name())
			paths = append(paths, p)
			walk(sub, p)
		}
	}
	walk(newRoot(nil, nil), nil)
	return paths
}

// TestCLIHelpEveryCommand: every command answers --help, -h and
// `qfetch help <command>` on stdout with exit 0, its usage line first,
// without touching NATS.
func TestCLIHelpEveryCommand(t *testing.T) {
	t.Setenv("QFETCH_NATS_URL", "nats://127.0.0.1:1")
	paths := append(commandPaths(), nil) // nil: qfetch itself
	if len(paths) < 16 {
		t.Fatalf("only %d commands found: %v", len(paths), paths)
	}
	for _, path := range paths {
		name := strings.TrimSpace("qfetch " + strings.Join(path, " "))
		forms := [][]string{append(path, "--help"), append(path, "-h"), append([]string{"help"}, path...)}
		var first string
		for _, args := range forms {
			code, out, errs := qfetch(t.Context(), args...)
			if code != 0 || errs != "" {
				t.Errorf("qfetch %s: exit %d, stderr %q", strings.Join(args, " "), code, errs)
			}
			if !strings.HasPrefix(out, "usage: "+name) {
				t.Errorf("qfetch %s: stdout does not start with %q:\n%s", strings.Join(args, " "), "usage: "+name, out)
			}
			if first == "" {
				first = out
			} else if out != first {
				t.Errorf("qfetch %s prints other help than %s --help", strings.Join(args, " "), name)
			}
		}
	}
}

// TestCLIUsageTexts: the help keeps what the usage texts said: examples,
// exit codes, the forms of dlq and watermark.
func TestCLIUsageTexts(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"commands:", "completion", "exit codes:", "130  interrupted", "qfetch --version"}},
		{[]string{"dlq", "--help"}, []string{"qfetch dlq show SEQ [--json]", "qfetch dlq drop --yes", "list", "replay", "--local"}},
		{[]string{"watermark", "--help"}, []string{"qfetch watermark set --yes --time RFC3339", "show", "set"}},
		{[]string{"runs", "--help"}, []string{"-n, --limit", "0 lists none, -1 all", "--json", "--local DIR", "2    configuration"}},
		{[]string{"status", "--help"}, []string{"qfetch status RUN --json", "--watch", "--every"}},
		{[]string{"sim", "--help"}, []string{"qfetch sim --hosts 100000", "--fault kind=probability"}},
		{[]string{"check", "--help"}, []string{"skipped", "exit\nstatus 1 when any failed"}},
		{[]string{"completion", "--help"}, []string{"bash", "zsh", "fish", "source <(qfetch completion bash)"}},
	} {
		_, out, _ := qfetch(t.Context(), tc.args...)
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("qfetch %s lacks %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
	}
}

// TestCLIVersion: --version and version answer on stdout with exit 0;
// a command's own flags do not include it.
func TestCLIVersion(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, 0, "qfetch " + app.Version + "\n  revision "},
		{[]string{"version"}, 0, "qfetch " + app.Version + "\n  revision "},
		{[]string{"version", "--json"}, 0, `"version": "` + app.Version + `"`},
		{[]string{"runs", "--version"}, 2, ""},
		{[]string{"version", "extra"}, 2, ""},
	} {
		code, out, errs := qfetch(t.Context(), tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || (tc.out == "") != (out == "") {
			t.Errorf("qfetch %s: exit %d, stdout %q, stderr %q; want %d, %q", strings.Join(tc.args, " "), code, out, errs, tc.code, tc.out)
		}
	}
	var v struct {
		Version   string `json:"version"`
		GoVersion string `json:"go_version"`
	}
	_, out, _ := qfetch(t.Context(), "version", "--json")
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version != app.Version || v.GoVersion == "" {
		t.Errorf("version --json: %q (%v)", out, err)
	}
}

// TestCLIBadValues: a bad command line is exit 2 with one line on stderr
// that names what is wrong, nothing on stdout, and NATS never dialled (an
// unreachable NATS would be exit 3).
func TestCLIBadValues(t *testing.T) {
	t.Setenv("QFETCH_NATS_URL", "nats://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"stauts"}, "did you mean status?"},
		{[]string{"help", "nope"}, `no help for "nope"`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"runs", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"runs", "-n", "x"}, `invalid argument "x"`},
		{[]string{"runs", "-n", "-2"}, "-n -2"},
		{[]string{"runs", "extra"}, `unknown command "extra"`},
		{[]string{"runs", "--local="}, "--local= names no directory"},
		{[]string{"status", "a", "b"}, "at most 1 arg"},
		{[]string{"status", "bad id!"}, `"bad id!" is not a run ID`},
		{[]string{"status", "--every", "0s"}, "--every 0s"},
		{[]string{"status", "--every", "soon"}, `invalid argument "soon"`},
		{[]string{"status", "--watch=maybe"}, `invalid argument "maybe"`},
		{[]string{"dlq"}, "say which: list, show, replay or drop"},
		{[]string{"dlq", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"dlq", "show"}, "accepts 1 arg"},
		{[]string{"dlq", "show", "x"}, `"x" is not a dead letter's sequence`},
		{[]string{"dlq", "show", "0", "--json"}, `"0" is not a dead letter's sequence`},
		{[]string{"dlq", "list", "--run", "*"}, `--run "*" is not a run ID`},
		{[]string{"dlq", "list", "--all"}, "unknown flag: --all"},
		{[]string{"dlq", "drop", "1", "--run", ">"}, `--run ">" is not a run ID`},
		{[]string{"dlq", "replay", "1", "x"}, `"x" is not a dead letter's sequence`},
		{[]string{"watermark"}, "say which: show or set"},
		{[]string{"watermark", "set", "--time", "yesterday"}, `--time "yesterday" is not RFC 3339`},
		{[]string{"watermark", "set", "--time", "2026-01-02T15:04:05Z", "--yes"}, "say why with --reason"},
		{[]string{"watermark", "set", "--time", "2026-01-02T15:04:05Z", "--reason", "x", "--by", ""}, "say who with --by"},
		{[]string{"watermark", "show", "extra"}, `unknown command "extra"`},
		{[]string{"check", "extra"}, `unknown command "extra"`},
		{[]string{"exporter", "extra"}, `unknown command "extra"`},
		{[]string{"local", "extra"}, `unknown command "extra"`},
		{[]string{"local", "--hosts", "many"}, `invalid argument "many"`},
		{[]string{"sim", "extra"}, `unknown command "extra"`},
		{[]string{"sim", "--fault", "boom=0.1"}, "kinds:"},
		{[]string{"sim", "--hosts", "-5"}, "Hosts must be ≥ 0, got -5"},
		{[]string{"sim", "--start", "monday"}, `--start "monday" is not RFC 3339`},
		{[]string{"completion"}, "say which shell: bash, zsh or fish"},
		{[]string{"completion", "tcsh"}, "say which shell"},
	} {
		name := strings.Join(tc.args, " ")
		code, out, errs := qfetch(t.Context(), tc.args...)
		if code != 2 {
			t.Errorf("qfetch %s: exit %d, want 2 (stderr %q)", name, code, errs)
		}
		if out != "" {
			t.Errorf("qfetch %s: stdout %q, want nothing", name, out)
		}
		if strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "qfetch") || !strings.Contains(errs, tc.want) {
			t.Errorf("qfetch %s: stderr %q, want one line saying %q", name, errs, tc.want)
		}
	}
}

// TestCLIFlagsAfterArguments: flags are taken before, between and after
// the arguments, as the usage texts print them, against a real NATS.
func TestCLIFlagsAfterArguments(t *testing.T) {
	url := testenv.NATSURL(t)
	t.Setenv("QFETCH_NATS_URL", url)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := msg.Setup(t.Context(), js, msg.Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Setup(t.Context(), js, ledger.Config{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"status", "r1", "--json"}, 1, "", "not found"},
		{[]string{"status", "--json", "r1"}, 1, "", "not found"},
		{[]string{"dlq", "show", "1", "--json"}, 1, "", "dead letter"},
		{[]string{"dlq", "list", "--json", "--run", "r1"}, 0, "[]", ""},
		{[]string{"dlq", "list", "--run", "r1", "--json"}, 0, "[]", ""},
		{[]string{"dlq", "replay", "--run", "r1", "--json"}, 0, "no dead letters to replay", ""},
		{[]string{"dlq", "drop", "--run", "r1", "--yes"}, 0, "no dead letters to drop", ""},
		{[]string{"runs", "--json", "-n", "5"}, 0, "[]", ""},
		{[]string{"runs", "-n", "0"}, 0, "", ""},
		{[]string{"runs", "-n", "-1"}, 0, "no runs yet", ""},
		{[]string{"watermark", "show", "--json"}, 0, `"history": []`, ""},
		{[]string{"watermark", "set", "--time", "2026-01-01T00:00:00Z", "--reason", "test"}, 2, "", "needs --yes"},
		{[]string{"watermark", "set", "--reason", "test", "--yes", "--time", "2026-01-01T00:00:00Z", "--json"}, 0, `"to": "2026-01-01T00:00:00Z"`, ""},
		{[]string{"dlq", "replay"}, 2, "", "name dead letters by sequence"},
	} {
		code, out, errs := qfetch(t.Context(), tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || (tc.out == "") != (out == "") ||
			!strings.Contains(errs, tc.errs) || (tc.errs == "") != (errs == "") {
			t.Errorf("qfetch %s: exit %d, stdout %q, stderr %q; want %d, %q, %q",
				strings.Join(tc.args, " "), code, out, errs, tc.code, tc.out, tc.errs)
		}
	}
}

// TestCLICompletion: the scripts for bash, zsh and fish, and the
// completions they ask qfetch for: commands, verbs, flags.
func TestCLICompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, out, errs := qfetch(t.Context(), "completion", shell)
		if code != 0 || errs != "" || !strings.Contains(out, "__complete") || !strings.Contains(out, "qfetch") {
			t.Errorf("completion %s: exit %d, stderr %q, %d bytes", shell, code, errs, len(out))
		}
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{""}, []string{"check", "dlq", "runs", "status", "watermark", "completion"}},
		{[]string{"dlq", ""}, []string{"list", "show", "replay", "drop"}},
		{[]string{"watermark", ""}, []string{"show", "set"}},
		{[]string{"status", "--"}, []string{"--json", "--watch", "--local"}},
		{[]string{"help", "d"}, []string{"dlq"}},
		{[]string{"completion", ""}, []string{"bash", "zsh", "fish"}},
	} {
		code, out, _ := qfetch(t.Context(), append([]string{cobra.ShellCompRequestCmd}, tc.args...)...)
		for _, w := range tc.want {
			if code != 0 || !strings.Contains(out, w+"\t") && !strings.Contains(out, w+"\n") {
				t.Errorf("completing qfetch %q: exit %d, %q lacks %q", tc.args, code, out, w)
			}
		}
	}
}

// TestCLILocal: --local[=DIR] opens the store of local runs instead of
// NATS, for each operator command; its errors keep their exit code.
func TestCLILocal(t *testing.T) {
	// NATS is never dialled with --local: this URL would be exit 3.
	t.Setenv("QFETCH_NATS_URL", "nats://127.0.0.1:1")
	var asked []string
	fail := errors.New("no kept store")
	openLocal = func(ctx context.Context, dir string) (*local.Inspect, error) {
		asked = append(asked, dir)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if strings.Contains(dir, "fleet") {
			return nil, failure.FleetWide(fail)
		}
		return nil, fail
	}
	t.Cleanup(func() { openLocal = local.Open })

	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	def := local.DefaultDir()
	for _, tc := range []struct {
		ctx  context.Context
		args []string
		dir  string
		code int
	}{
		{t.Context(), []string{"runs", "--local"}, def, 1},
		{t.Context(), []string{"runs", "--local=/tmp/x", "--json"}, "/tmp/x", 1},
		{t.Context(), []string{"status", "--local", "r1"}, def, 1},
		{t.Context(), []string{"status", "r1", "--local=/tmp/y"}, "/tmp/y", 1},
		{t.Context(), []string{"dlq", "list", "--local"}, def, 1},
		{t.Context(), []string{"dlq", "--local=/tmp/z", "show", "3"}, "/tmp/z", 1},
		{t.Context(), []string{"dlq", "replay", "--all", "--local"}, def, 1},
		{t.Context(), []string{"dlq", "drop", "--all", "--yes", "--local"}, def, 1},
		{t.Context(), []string{"watermark", "show", "--local"}, def, 1},
		{t.Context(), []string{"watermark", "set", "--local", "--yes", "--reason", "r", "--time", "2026-01-02T15:04:05Z"}, def, 1},
		{t.Context(), []string{"runs", "--local=/tmp/fleet"}, "/tmp/fleet", 3},
		{cancelled, []string{"runs", "--local"}, def, 130},
	} {
		asked = nil
		code, out, errs := qfetch(tc.ctx, tc.args...)
		if code != tc.code || out != "" || len(asked) != 1 || asked[0] != tc.dir {
			t.Errorf("qfetch %s: exit %d (want %d), stdout %q, opened %q (want %q)", strings.Join(tc.args, " "), code, tc.code, out, asked, tc.dir)
		}
		if want := fmt.Sprintf("local runs in %s: ", tc.dir); !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("qfetch %s: stderr %q, want one line with %q", strings.Join(tc.args, " "), errs, want)
		}
	}

	// The real store on an empty directory: no local runs, said without
	// dialling NATS or hanging.
	openLocal = local.Open
	dir := t.TempDir()
	ctx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	code, out, errs := qfetch(ctx, "runs", "--local="+dir)
	if code == 2 || strings.Contains(errs, "127.0.0.1:1") || (code == 0) != strings.Contains(out, "no runs yet") ||
		(code != 0 && !strings.Contains(errs, dir)) {
		t.Errorf("runs --local=<empty dir>: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}

// TestLocalSummary: qfetch local's summary counts in MiB with the units
// the other commands use, says "1 batch", and how to look at the run again.
func TestLocalSummary(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		sum  local.Summary
		flag string
		want []string
	}{
		{"one batch", local.Summary{Run: "r1", Before: at, Batches: 1, HostsRequested: 1, HostsReturned: 1, Bytes: 3 << 20, Seconds: 2},
			"--local", []string{"window [the beginning, 2026-01-02T03:04:05Z)", "1 batch, 1 host requested, 1 with detections, 3.0 MiB in 2.0s (1.5 MiB/s)",
				"qfetch status r1 --local "}},
		{"many", local.Summary{Run: "r2", After: at, Before: at.Add(time.Hour), Batches: 20, HostsRequested: 20000, Bytes: 512, Seconds: 1},
			"--local=/data", []string{"[2026-01-02T03:04:05Z, 2026-01-02T04:04:05Z)", "20 batches, 20000 hosts requested", "512 B in 1.0s (512 B/s)",
				"qfetch status r2 --local=/data"}},
		{"nothing to do", local.Summary{Skipped: "the window is empty"}, "--local", []string{"nothing to do: the window is empty\n"}},
		{"tables", local.Summary{Run: "r3", Batches: 1, Tables: "/d/qualys/tables/manifests/r3.json", TablesGlob: "/d/qualys/tables/detections/**/*.parquet"},
			"--local", []string{"tables /d/qualys/tables/manifests/r3.json", `duckdb -c "SELECT severity, count(*) FROM read_parquet('/d/qualys/tables/detections/**/*.parquet', hive_partitioning=true)`}},
		{"tables incomplete", local.Summary{Run: "r4", Batches: 1, TablesNote: "the run's tables are incomplete"}, "--local", []string{"  the run's tables are incomplete\n"}},
		{"kb full", local.Summary{Run: "r5", Batches: 1, Tables: "/d/m.json", TablesGlob: "/d/det/**/*.parquet",
			KB: &local.KBSummary{Pass: "kb-5", Full: true, Batches: 3, QIDs: 2938, Bytes: 10 << 20, Seconds: 7.5, Manifest: "/d/kb/kb-5/manifest.json",
				KBGlob: "/d/kb/**/*.parquet", RunsGlob: "/d/runs/**/*.parquet"}},
			"--local", []string{"kb pass kb-5 (full): 3 batches, 2938 QIDs returned (0 backfilled asked), 10.0 MiB in 7.5s\n",
				"  manifest /d/kb/kb-5/manifest.json\n",
				`  join: duckdb -c "SELECT d.host_id, d.qid, k.title, d.severity, [c.id FOR c IN k.cves] AS cves, k.cvss_base, k.cvss3_base FROM read_parquet('/d/det/**/*.parquet', hive_partitioning=true) d LEFT JOIN (SELECT * FROM read_parquet('/d/kb/**/*.parquet', hive_partitioning=true) WHERE run IN (SELECT run FROM read_parquet('/d/runs/**/*.parquet', hive_partitioning=true) WHERE kind = 'kb') QUALIFY row_number() OVER (PARTITION BY qid ORDER BY run DESC) = 1) k ON k.qid = d.qid WHERE d.run = 'r5' AND d.status IN ('New', 'Active', 'Re-Opened') ORDER BY d.severity DESC, k.cvss3_base DESC NULLS LAST LIMIT 20"` + "\n"}},
		{"kb incremental incomplete", local.Summary{Run: "r6", Batches: 1,
			KB: &local.KBSummary{Pass: "kb-6", Batches: 1, QIDs: 1, Backfill: 2, Bytes: 512, Seconds: 1, Note: "KnowledgeBase pass kb-6 incomplete"}},
			"--local", []string{"kb pass kb-6 (incremental): 1 batch, 1 QID returned (2 backfilled asked), 512 B in 1.0s\n  KnowledgeBase pass kb-6 incomplete\n"}},
		{"kb step failed", local.Summary{Run: "r7", Batches: 1, KB: &local.KBSummary{Note: "the KnowledgeBase step failed: x"}},
			"--local", []string{"  the KnowledgeBase step failed: x\n"}},
	} {
		var b strings.Builder
		printSummary(&b, tc.sum, tc.flag)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: summary lacks %q:\n%s", tc.name, w, b.String())
			}
		}
		if strings.Contains(b.String(), " MB") || strings.Contains(b.String(), "1 batches") {
			t.Errorf("%s: %s", tc.name, b.String())
		}
	}
	if got := localFlag(local.DefaultDir()); got != "--local" {
		t.Errorf("localFlag(default) = %q", got)
	}
}
