package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is a whole qfetch on real parts (testrun); runs are made by the real
// planner and worker.
type env struct{ *testrun.Env }

// setup makes an env in which one charged failure dead-letters a batch, so
// that a forced fault makes one.
func setup(t *testing.T, hosts int64) *env {
	return &env{testrun.New(t, testrun.Options{Hosts: hosts, Seed: 5, MaxFailures: 1})}
}

// runs is `qfetch runs --json`, decoded, by run ID.
func (e *env) runs(cfg runstat.Config) map[string]runstat.Status {
	e.T.Helper()
	var buf bytes.Buffer
	if err := ops.Runs(e.T.Context(), e.Q, cfg, 20, ops.Output{W: &buf, JSON: true}); err != nil {
		e.T.Fatal(err)
	}
	var list []runstat.Status
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		e.T.Fatalf("runs --json: %v\n%s", err, buf.String())
	}
	out := map[string]runstat.Status{}
	for _, s := range list {
		out[s.Run] = s
	}
	return out
}

func (e *env) deadLetters(run string) []msg.DeadLetter {
	e.T.Helper()
	var buf bytes.Buffer
	if err := ops.DLQList(e.T.Context(), e.Q, run, ops.Output{W: &buf, JSON: true}); err != nil {
		e.T.Fatal(err)
	}
	var list []msg.DeadLetter
	if err := json.Unmarshal(buf.Bytes(), &list); err != nil {
		e.T.Fatalf("dlq list --json: %v\n%s", err, buf.String())
	}
	return list
}

// TestRunsInEveryState walks runs through every state with the real
// planner and worker and reads them back with `runs`, `status` and `dlq`;
// replaying the dead letter turns the failed run into a complete one.
func TestRunsInEveryState(t *testing.T) {
	e := setup(t, 3000)
	ctx := t.Context()

	// A: complete.
	a := e.Plan()
	e.Work(e.Complete(a.Run))

	// B: one batch dead-lettered, nothing else left: failed.
	e.Sim.Advance(3 * 24 * time.Hour)
	b := e.FailedRun()

	// C: the planner gives up (Qualys rejects the login): failed.
	e.Sim.Advance(3 * 24 * time.Hour)
	e.Sim.SetRejectLogins(true)
	if _, err := e.Planner().Run(ctx); !errors.Is(err, plan.ErrRunFailed) {
		t.Fatalf("planner with a rejected login: %v, want ErrRunFailed", err)
	}
	e.Sim.SetRejectLogins(false)
	ids, _ := e.Q.RunIDs(ctx)
	c := e.Record(ids[len(ids)-1])

	// D: the planner stopped after its first batch: planning.
	e.Sim.Advance(3 * 24 * time.Hour)
	if err := e.Sim.SetFaults(qualysim.Faults{SlowStartFor: 3 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := e.Sim.ForceFault(qualysim.HostList, qualysim.FaultSlowStart, 100); err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _, _ = e.Planner().Run(pctx) })
	var d ledger.RunRecord
	testenv.Eventually(t, 30*time.Second, func() bool {
		ids, _ := e.Q.RunIDs(ctx)
		if len(ids) < 4 {
			return false
		}
		d, _ = e.Q.GetRun(ctx, ids[len(ids)-1])
		return d.Progress.Batches >= 1
	}, "the planner published no batch")
	stop()
	wg.Wait()
	e.Sim.ClearForcedFaults()
	if err := e.Sim.SetFaults(qualysim.Faults{}); err != nil {
		t.Fatal(err)
	}

	got := e.runs(runstat.Config{})
	want := map[string]ledger.RunState{a.Run: ledger.RunComplete, b.ID: ledger.RunFailed, c.ID: ledger.RunFailed, d.ID: ledger.RunPlanning}
	for run, st := range want {
		if got[run].State != st {
			t.Errorf("run %s: state %q, want %q (%+v)", run, got[run].State, st, got[run])
		}
	}
	if s := got[a.Run]; s.BatchesDone != s.BatchesPlanned || s.BatchesPlanned == 0 || s.Bytes == 0 || s.HostsRequested == 0 {
		t.Errorf("complete run %s: %+v", a.Run, s)
	}
	if s := got[b.ID]; s.DeadLetters != 1 || s.BatchesDone != s.BatchesPlanned-1 || s.Retries != 1 || s.Action == "" {
		t.Errorf("dead-lettered run %s: %+v", b.ID, s)
	}
	if s := got[c.ID]; s.Error == "" || strings.Contains(s.Error, e.Sim.Password()) {
		t.Errorf("failed run %s: error %q", c.ID, s.Error)
	}

	// The planner resumes D and finishes planning: fetching, every batch
	// queued; a day and more later the same run is stale.
	out := e.Plan()
	if out.Run != d.ID || !out.Resumed {
		t.Fatalf("planner: %+v, want run %s resumed", out, d.ID)
	}
	d = e.Record(d.ID)
	s := e.runs(runstat.Config{})[d.ID]
	if s.State != ledger.RunFetching || s.BatchesQueued != uint64(d.BatchesPlanned) || s.BatchesDone != 0 || !s.PlanningComplete {
		t.Errorf("run %s after planning: %+v", d.ID, s)
	}
	later := runstat.Config{Now: func() time.Time { return time.Now().Add(27 * time.Hour) }}
	if s := e.runs(later)[d.ID]; s.State != ledger.RunStale {
		t.Errorf("run %s 27h on: state %q, want stale", d.ID, s.State)
	}

	// status prints the same run.
	var buf bytes.Buffer
	if err := ops.Status(ctx, e.Q, runstat.Config{}, d.ID, false, time.Second, ops.Output{W: &buf, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var one runstat.Status
	if err := json.Unmarshal(buf.Bytes(), &one); err != nil || one.Run != d.ID || one.BatchesPlanned != d.BatchesPlanned {
		t.Fatalf("status --json %s: %v %+v", d.ID, err, one)
	}

	// dlq: B's one dead letter, with its batch and the reason.
	dls := e.deadLetters("")
	if len(dls) != 1 || dls[0].Run != b.ID || dls[0].BatchKey() == "" || dls[0].Seq == 0 || dls[0].LastError == "" {
		t.Fatalf("dead letters: %+v", dls)
	}
	buf.Reset()
	if err := ops.DLQShow(ctx, e.Q, dls[0].Seq, ops.Output{W: &buf}); err != nil || !strings.Contains(buf.String(), b.ID) {
		t.Fatalf("dlq show: %v\n%s", err, buf.String())
	}

	// Replay B's dead letter; the workers complete B (and D).
	if fails, err := e.Q.Failures(ctx, b.ID); err != nil || fails[dls[0].BatchKey()] == 0 {
		t.Fatalf("failure count before replay: %v, %v", fails, err)
	}
	buf.Reset()
	if err := ops.DLQReplay(ctx, e.Q, ops.Selection{Run: b.ID}, ops.Output{W: &buf}); err != nil {
		t.Fatalf("replay: %v\n%s", err, buf.String())
	}
	if n := len(e.deadLetters("")); n != 0 {
		t.Fatalf("%d dead letters after replay", n)
	}
	// Replayed with its failure count reset: a full share of retries again.
	if fails, err := e.Q.Failures(ctx, b.ID); err != nil || fails[dls[0].BatchKey()] != 0 {
		t.Fatalf("failure count after replay: %v, %v", fails, err)
	}
	e.Work(func() bool { return e.Complete(b.ID)() && e.Complete(d.ID)() })
	got = e.runs(runstat.Config{})
	for _, run := range []string{a.Run, b.ID, d.ID} {
		if s := got[run]; s.State != ledger.RunComplete || s.BatchesDone != s.BatchesPlanned || s.DeadLetters != 0 {
			t.Errorf("run %s at the end: %+v", run, s)
		}
	}
	// B's objects are all there, the replayed batch's included.
	e.checkManifest(b.ID)
	// The watermark is D's window end: the newest complete run's, once
	// the planner's step moved it over B and D.
	if _, err := e.AdvanceWatermark(); err != nil { // the next planner pass's step
		t.Fatal(err)
	}
	wm, err := e.Q.Watermark(ctx)
	if err != nil || !wm.Time.Equal(d.Before) {
		t.Fatalf("watermark %v (%v), want %s", wm.Time, err, d.Before)
	}
}

// checkManifest checks the run's manifest: every planned batch is in it
// (the replayed one too), with every planned host, and the record's totals
// agree.
func (e *env) checkManifest(run string) {
	e.T.Helper()
	rec := e.Record(run)
	r, err := e.Store.Get(e.T.Context(), objstore.ManifestKey(testrun.Prefix, run))
	if err != nil {
		e.T.Fatalf("manifest of %s: %v", run, err)
	}
	defer r.Close()
	var m finish.Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		e.T.Fatal(err)
	}
	var keys []string
	for _, b := range m.Batches {
		keys = append(keys, b.Batch)
		for _, o := range b.Objects {
			if _, err := e.Store.Stat(e.T.Context(), o.Key); err != nil {
				e.T.Errorf("run %s batch %s: object %s: %v", run, b.Batch, o.Key, err)
			}
		}
	}
	var want []string
	for i := 1; i <= rec.BatchesPlanned; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if !slices.Equal(keys, want) {
		e.T.Errorf("run %s: manifest batches %v, want %v", run, keys, want)
	}
	if m.Totals.HostsRequested != rec.HostsPlanned {
		e.T.Errorf("run %s: manifest requested %d hosts, %d planned", run, m.Totals.HostsRequested, rec.HostsPlanned)
	}
	if t := rec.Totals; t == nil || t.HostsReturned != m.Totals.HostsReturned || t.Bytes != m.Totals.Bytes || t.Batches != m.Totals.Batches {
		e.T.Errorf("run %s: record totals %+v, manifest %+v", run, rec.Totals, m.Totals)
	}
}

// TestDropAcceptsIncomplete: drop needs --yes, then removes the dead letter,
// records the acceptance and leaves the watermark alone (I1).
func TestDropAcceptsIncomplete(t *testing.T) {
	e := setup(t, 1000)
	ctx := t.Context()
	b := e.FailedRun()
	dls := e.deadLetters(b.ID)
	if len(dls) != 1 {
		t.Fatalf("dead letters: %+v", dls)
	}
	var buf bytes.Buffer
	err := ops.DLQDrop(ctx, e.Q, ops.Selection{Run: b.ID}, "alice@ops", "host decommissioned", false, ops.Output{W: &buf})
	if !errors.Is(err, ops.ErrNeedYes) {
		t.Fatalf("drop without --yes: %v", err)
	}
	if n := len(e.deadLetters(b.ID)); n != 1 {
		t.Fatalf("drop without --yes removed it: %d left", n)
	}
	if err := ops.DLQDrop(ctx, e.Q, ops.Selection{}, "alice@ops", "", true, ops.Output{W: &buf}); !errors.Is(err, ops.ErrSelection) {
		t.Fatalf("drop of nothing named: %v", err)
	}
	if err := ops.DLQDrop(ctx, e.Q, ops.Selection{Seqs: []uint64{dls[0].Seq}}, "", "no", true, ops.Output{W: &buf}); err == nil {
		t.Fatal("a drop by nobody was accepted")
	}
	if n := len(e.deadLetters(b.ID)); n != 1 || e.Record(b.ID).Accepted != nil {
		t.Fatalf("a drop by nobody removed or recorded it: %d left", n)
	}
	if err := ops.DLQDrop(ctx, e.Q, ops.Selection{Seqs: []uint64{dls[0].Seq}}, "alice@ops", "host decommissioned", true, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	if n := len(e.deadLetters("")); n != 0 {
		t.Fatalf("%d dead letters after drop", n)
	}
	rec := e.Record(b.ID)
	if a := rec.Accepted; a == nil || a.By != "alice@ops" || a.Reason != "host decommissioned" || !slices.Equal(a.Dropped, []string{dls[0].BatchKey()}) {
		t.Fatalf("acceptance: %+v", rec.Accepted)
	}
	if s := e.runs(runstat.Config{})[b.ID]; s.State != ledger.RunAcceptedIncomplete {
		t.Fatalf("state %q, want accepted-incomplete", s.State)
	}
	if _, err := e.Q.Watermark(ctx); !errors.Is(err, ledger.ErrNoWatermark) {
		t.Fatalf("drop moved the watermark: %v", err)
	}
	// Dropping again finds nothing: the dead letter is gone for good.
	if err := ops.DLQDrop(ctx, e.Q, ops.Selection{Seqs: []uint64{dls[0].Seq}}, "alice@ops", "", true, ops.Output{W: &buf}); !errors.Is(err, msg.ErrNoDeadLetter) {
		t.Fatalf("second drop: %v", err)
	}
	// The next run's window starts where the last complete run ended: the
	// beginning, so the dropped batch's hosts are asked for again.
	e.Sim.Advance(time.Hour)
	next := e.Plan()
	if next.Run == b.ID || !e.Record(next.Run).After.IsZero() {
		t.Fatalf("next run %+v starts at %s", next, e.Record(next.Run).After)
	}
}

// TestWatermarkSet: set needs --yes and a reason, and its history keeps who
// and why.
func TestWatermarkSet(t *testing.T) {
	e := setup(t, 500)
	ctx := t.Context()
	a := e.Plan()
	e.Work(e.Complete(a.Run))
	if _, err := e.AdvanceWatermark(); err != nil { // the next planner pass's step
		t.Fatal(err)
	}
	rec := e.Record(a.Run)

	var buf bytes.Buffer
	to := rec.Before.Add(-48 * time.Hour)
	if err := ops.WatermarkSet(ctx, e.Q, to, "bob@ops", "re-fetch two days", false, ops.Output{W: &buf}); !errors.Is(err, ops.ErrNeedYes) {
		t.Fatalf("set without --yes: %v", err)
	}
	if err := ops.WatermarkSet(ctx, e.Q, to, "bob@ops", "", true, ops.Output{W: &buf}); err == nil {
		t.Fatal("set without a reason was accepted")
	}
	if wm, _ := e.Q.Watermark(ctx); !wm.Time.Equal(rec.Before) {
		t.Fatalf("watermark moved without --yes: %s", wm.Time)
	}
	if err := ops.WatermarkSet(ctx, e.Q, to, "bob@ops", "re-fetch two days", true, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := ops.WatermarkShow(ctx, e.Q, ops.Output{W: &buf, JSON: true}); err != nil {
		t.Fatal(err)
	}
	var shown struct {
		Current *ledger.Watermark  `json:"current"`
		History []ledger.Watermark `json:"history"`
	}
	if err := json.Unmarshal(buf.Bytes(), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Current == nil || !shown.Current.Time.Equal(to) || shown.Current.By != "bob@ops" {
		t.Fatalf("current: %+v", shown.Current)
	}
	if len(shown.History) != 2 || shown.History[0].Run != a.Run || shown.History[1].Reason != "re-fetch two days" {
		t.Fatalf("history: %+v", shown.History)
	}
	// The next run starts from the watermark set (minus the overlap, 0 here).
	e.Sim.Advance(time.Hour)
	next := e.Plan()
	if got := e.Record(next.Run).After; !got.Equal(to) {
		t.Fatalf("next window starts at %s, want %s", got, to)
	}
}

// TestStatusWatch follows a run to completion.
func TestStatusWatch(t *testing.T) {
	e := setup(t, 1000)
	out := e.Plan()
	var buf bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- ops.Status(t.Context(), e.Q, runstat.Config{}, "", true, 50*time.Millisecond, ops.Output{W: &buf})
	}()
	e.Work(e.Complete(out.Run))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, out.Run+" [##############################] 100%") || !strings.HasSuffix(last, " complete") {
		t.Fatalf("last progress line %q", last)
	}
}

// TestStatusShowsDrained: a failed run's batches acknowledged without a
// call are counted in `status` (the detail and the progress line) and its
// JSON, and not mentioned while there are none.
func TestStatusShowsDrained(t *testing.T) {
	e := setup(t, 1000)
	b := e.FailedRun()
	status := func(json bool) string {
		var buf bytes.Buffer
		if err := ops.Status(t.Context(), e.Q, runstat.Config{}, b.ID, !json, time.Second, ops.Output{W: &buf, JSON: json}); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	if out := status(false); strings.Contains(out, "drained") {
		t.Fatalf("status of a run with nothing drained:\n%s", out)
	}
	for _, batch := range []string{"2", "3"} {
		if err := e.Q.MarkDrained(t.Context(), b.ID, batch); err != nil {
			t.Fatal(err)
		}
	}
	out := status(false)
	if !strings.Contains(out, ", 2 drained (run failed)") || !strings.Contains(out, "  dead 1  drained 2  eta") {
		t.Fatalf("status of a run with 2 batches drained:\n%s", out)
	}
	var s runstat.Status
	if err := json.Unmarshal([]byte(status(true)), &s); err != nil || s.Drained != 2 {
		t.Fatalf("status --json: %+v, %v", s, err)
	}
}
