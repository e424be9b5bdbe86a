package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/runstat"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeRuns is a queue holding completed runs r1…rN, the first one from the
// beginning.
type fakeRuns struct{ n int }

func (f fakeRuns) RunIDs(context.Context) ([]string, error) {
	var ids []string
	for i := 1; i <= f.n; i++ {
		ids = append(ids, fmt.Sprintf("r%d", i))
	}
	return ids, nil
}

func (f fakeRuns) GetRun(_ context.Context, id string) (ledger.RunRecord, error) {
	var i int
	if _, err := fmt.Sscanf(id, "r%d", &i); err != nil || i < 1 || i > f.n {
		return ledger.RunRecord{}, ledger.ErrRunNotFound
	}
	rec := ledger.RunRecord{ID: id, State: ledger.RunComplete, PlanningComplete: true, BatchesPlanned: 1,
		Before: t0.Add(time.Duration(i) * time.Hour), Created: t0, Updated: t0, Completed: t0}
	if i > 1 {
		rec.After = t0.Add(time.Duration(i-1) * time.Hour)
	}
	return rec, nil
}

func (fakeRuns) DoneBatches(context.Context, string) ([]ledger.BatchResult, error) { return nil, nil }
func (fakeRuns) Splits(context.Context, string) ([]ledger.Split, error)            { return nil, nil }
func (fakeRuns) Failures(context.Context, string) (map[string]int, error)          { return nil, nil }
func (fakeRuns) Pending(context.Context, string) (uint64, error)                   { return 0, nil }
func (fakeRuns) DeadLetterCount(context.Context, string) (int, error)              { return 0, nil }
func (fakeRuns) CountDrained(context.Context, string) (int, error)                 { return 0, nil }

// TestRunsLimit: -n says how many of the newest runs: 0 none, -1 all, and
// "no runs yet" only when there are none.
func TestRunsLimit(t *testing.T) {
	for _, tc := range []struct {
		runs, n int
		want    []string // runs listed, newest first
		text    string   // what the table says, "" for nothing
	}{
		{3, 2, []string{"r3", "r2"}, "RUN"},
		{3, 10, []string{"r3", "r2", "r1"}, "RUN"},
		{3, -1, []string{"r3", "r2", "r1"}, "RUN"},
		{3, 0, []string{}, ""},
		{0, 0, []string{}, ""},
		{0, -1, []string{}, "no runs yet"},
		{0, 5, []string{}, "no runs yet"},
	} {
		name := fmt.Sprintf("%d runs, -n %d", tc.runs, tc.n)
		var js, text bytes.Buffer
		if err := ops.Runs(t.Context(), fakeRuns{tc.runs}, runstat.Config{}, tc.n, ops.Output{W: &js, JSON: true}); err != nil {
			t.Fatal(err)
		}
		var list []struct{ Run string }
		if err := json.Unmarshal(js.Bytes(), &list); err != nil || list == nil {
			t.Fatalf("%s: %q (%v)", name, js.String(), err)
		}
		got := []string{}
		for _, s := range list {
			got = append(got, s.Run)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: JSON lists %v, want %v", name, got, tc.want)
		}
		if err := ops.Runs(t.Context(), fakeRuns{tc.runs}, runstat.Config{}, tc.n, ops.Output{W: &text}); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(text.String(), tc.text) || (tc.text == "") != (text.Len() == 0) {
			t.Errorf("%s: table %q, want it to start with %q", name, text.String(), tc.text)
		}
		if rows := strings.Count(text.String(), "\n") - 1; tc.text == "RUN" && rows != len(tc.want) {
			t.Errorf("%s: %d rows, want %d", name, rows, len(tc.want))
		}
	}
}

// TestStatusJSONOpenWindow: a run from the beginning has "after": null in
// runs --json and status --json; the table says "beginning".
func TestStatusJSONOpenWindow(t *testing.T) {
	var b bytes.Buffer
	if err := ops.Runs(t.Context(), fakeRuns{2}, runstat.Config{}, -1, ops.Output{W: &b, JSON: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"after": null`) || !strings.Contains(b.String(), `"after": "2026-01-02T04:04:05Z"`) {
		t.Errorf("runs --json:\n%s", b.String())
	}
	b.Reset()
	if err := ops.Status(t.Context(), fakeRuns{2}, runstat.Config{}, "r1", false, time.Second, ops.Output{W: &b, JSON: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `"after": null`) {
		t.Errorf("status --json:\n%s", b.String())
	}
	b.Reset()
	if err := ops.Status(t.Context(), fakeRuns{2}, runstat.Config{}, "r1", false, time.Second, ops.Output{W: &b}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "beginning → 2026-01-02T04:04:05Z") {
		t.Errorf("status:\n%s", b.String())
	}
}

// fakeWatermarks holds a history, oldest first as the ledger keeps it.
type fakeWatermarks struct{ hist []ledger.Watermark }

func (f fakeWatermarks) Watermark(context.Context) (ledger.Watermark, error) {
	if len(f.hist) == 0 {
		return ledger.Watermark{}, ledger.ErrNoWatermark
	}
	return f.hist[len(f.hist)-1], nil
}
func (f fakeWatermarks) WatermarkHistory(context.Context) ([]ledger.Watermark, error) {
	return append([]ledger.Watermark(nil), f.hist...), nil
}
func (fakeWatermarks) SetWatermark(context.Context, ledger.Watermark) error { return nil }

// TestWatermarkShowOrder: the table and JSON list the history in one
// order, oldest first; the current watermark is the last entry.
func TestWatermarkShowOrder(t *testing.T) {
	var hist []ledger.Watermark
	for i, by := range []string{"r1", "alice@ops", "r3"} {
		hist = append(hist, ledger.Watermark{Time: t0.Add(time.Duration(i) * time.Hour), By: by, At: t0.Add(time.Duration(i) * time.Minute)})
	}
	q := fakeWatermarks{hist}
	var js, text bytes.Buffer
	if err := ops.WatermarkShow(t.Context(), q, ops.Output{W: &js, JSON: true}); err != nil {
		t.Fatal(err)
	}
	if err := ops.WatermarkShow(t.Context(), q, ops.Output{W: &text}); err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Current ledger.Watermark   `json:"current"`
		History []ledger.Watermark `json:"history"`
	}
	if err := json.Unmarshal(js.Bytes(), &shown); err != nil {
		t.Fatal(err)
	}
	var jsonOrder, tableOrder []string
	for _, w := range shown.History {
		jsonOrder = append(jsonOrder, w.By)
	}
	for _, m := range regexp.MustCompile(`(?m)^\d\S+\s+\S+\s+(\S+)\s`).FindAllStringSubmatch(text.String(), -1) {
		tableOrder = append(tableOrder, m[1])
	}
	want := "[r1 alice@ops r3]"
	if fmt.Sprint(jsonOrder) != want || fmt.Sprint(tableOrder) != want {
		t.Errorf("history in JSON %v, in the table %v; want both %s\n%s", jsonOrder, tableOrder, want, text.String())
	}
	if shown.Current.By != "r3" {
		t.Errorf("current %+v, want the last entry", shown.Current)
	}
}

// TestCheckJSONLevels: check --json says every level in lower case, a
// check that could not run is "skipped", and the table shows the same.
func TestCheckJSONLevels(t *testing.T) {
	cfg := ops.CheckConfig{NATSURL: "nats://127.0.0.1:1", Timeout: 5 * time.Second}
	var js, text bytes.Buffer
	if _, err := ops.Check(t.Context(), cfg, ops.Output{W: &js, JSON: true}); !errors.Is(err, ops.ErrCheckFailed) {
		t.Fatalf("check: %v", err)
	}
	var results []map[string]string
	if err := json.Unmarshal(js.Bytes(), &results); err != nil {
		t.Fatal(err)
	}
	levels := map[string]string{}
	for _, r := range results {
		levels[r["name"]] = r["level"]
		switch r["level"] {
		case "ok", "warn", "fail", "skipped":
		default:
			t.Errorf("%s: level %q", r["name"], r["level"])
		}
	}
	if levels["nats"] != "fail" || levels["jetstream"] != "skipped" || levels["bucket"] != "fail" || levels["qualys login"] != "fail" {
		t.Errorf("levels %v", levels)
	}
	if _, err := ops.Check(t.Context(), cfg, ops.Output{W: &text}); !errors.Is(err, ops.ErrCheckFailed) {
		t.Fatalf("check: %v", err)
	}
	if !regexp.MustCompile(`(?m)^SKIPPED\s+jetstream\s`).MatchString(text.String()) || !regexp.MustCompile(`(?m)^FAIL\s+nats\s`).MatchString(text.String()) {
		t.Errorf("table:\n%s", text.String())
	}
}

// dropDLQ holds dead letters; only what drop without --yes reads works.
type dropDLQ struct {
	unused
	list []msg.DeadLetter
}

// unused is the rest of ops.DeadLetters: a call panics.
type unused interface {
	DeadLetterAt(ctx context.Context, seq uint64) (msg.DeadLetter, error)
	Replay(ctx context.Context, seq uint64, before func(msg.Batch) error) (msg.Batch, error)
	DropDeadLetter(ctx context.Context, seq uint64, record func(msg.DeadLetter) error) (msg.DeadLetter, error)
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	ResetFailures(ctx context.Context, run, batch string) error
	Accept(ctx context.Context, run, key, by, reason string) (bool, error)
}

func (f dropDLQ) DeadLetters(context.Context, string) ([]msg.DeadLetter, error) { return f.list, nil }

// TestDLQDropCounts: drop without --yes counts what it would drop in
// words that agree with the number.
func TestDLQDropCounts(t *testing.T) {
	for _, tc := range []struct {
		runs []string
		want string
	}{
		{[]string{"r1"}, "drop removes 1 dead letter for good and marks run r1 accepted-incomplete"},
		{[]string{"r1", "r1"}, "drop removes 2 dead letters for good and marks run r1 accepted-incomplete"},
		{[]string{"r1", "r2"}, "drop removes 2 dead letters for good and marks runs r1, r2 accepted-incomplete"},
	} {
		var q dropDLQ
		for i, r := range tc.runs {
			q.list = append(q.list, msg.DeadLetter{Run: r, Seq: uint64(i + 1)})
		}
		var b bytes.Buffer
		err := ops.DLQDrop(t.Context(), q, ops.Selection{All: true}, "bob", "", false, ops.Output{W: &b})
		if !errors.Is(err, ops.ErrNeedYes) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.runs, err, tc.want)
		}
	}
}
