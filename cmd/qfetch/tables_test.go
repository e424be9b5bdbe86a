package main

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/local"
)

// TestCLITablesUsage: tables rebuild and status refuse a command line that
// says no run, or two ways of choosing, before anything is opened.
func TestCLITablesUsage(t *testing.T) {
	t.Setenv("QFETCH_NATS_URL", "nats://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tables"}, "say which: rebuild or status"},
		{[]string{"tables", "rebuild"}, "say which: --run RUN or --all"},
		{[]string{"tables", "rebuild", "--run", "r1", "--all"}, "say which: --run RUN or --all"},
		{[]string{"tables", "rebuild", "--all", "--concurrency", "0"}, "--concurrency 0"},
		{[]string{"tables", "rebuild", "--run", "a.b"}, "is not a run ID"},
		{[]string{"tables", "status"}, "say which run: --run RUN"},
		{[]string{"tables", "status", "--run", ">"}, "is not a run ID"},
	} {
		code, out, errs := qfetch(t.Context(), tc.args...)
		if code != 2 || out != "" || !strings.Contains(errs, tc.want) {
			t.Errorf("qfetch %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(tc.args, " "), code, out, errs, tc.want)
		}
	}
}

// TestCLITablesLocal: after a qfetch local run (which converts its tables),
// tables status says they are complete, and tables rebuild --all rebuilds
// them from the directory bucket.
func TestCLITablesLocal(t *testing.T) {
	dir := t.TempDir()
	sum, err := local.Run(t.Context(), local.Config{Dir: dir, Prefix: local.DefaultPrefix, BatchSize: 100, Slots: 2,
		PageSize: 150, SimHosts: 300, SimSeed: 3, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Tables == "" || !strings.HasPrefix(sum.TablesGlob, filepath.Join(dir, "bucket")) {
		t.Fatalf("summary %+v: no tables", sum)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tables", "status", "--run", sum.Run, "--local=" + dir}, "tables complete, "},
		{[]string{"tables", "rebuild", "--all", "--local=" + dir}, "run " + sum.Run + ": "},
		{[]string{"tables", "rebuild", "--run", sum.Run, "--json", "--local=" + dir}, `"ok":true`},
	} {
		code, out, errs := qfetch(t.Context(), tc.args...)
		if code != 0 || !strings.Contains(out, tc.want) || errs != "" {
			t.Errorf("qfetch %s: exit %d, stdout %q, stderr %q; want %q", strings.Join(tc.args, " "), code, out, errs, tc.want)
		}
	}
}
