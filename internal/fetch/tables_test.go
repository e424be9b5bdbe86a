package fetch_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/tables"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// tablesEnv is a testrun.Env whose parts queue table conversions, and the
// table loops (each a "process" with a connection of its own) that run
// them.
type tablesEnv struct {
	*testrun.Env
	t *testing.T
}

func setupTables(t *testing.T, hosts int64) *tablesEnv {
	t.Helper()
	return setupTablesWith(t, testrun.Options{Hosts: hosts, BatchSize: 40, PageSize: 70})
}

func setupTablesWith(t *testing.T, o testrun.Options) *tablesEnv {
	t.Helper()
	e := testrun.New(t, o)
	tq, err := msg.SetupTables(t.Context(), e.JS, msg.TablesConfig{AckWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.Q.Tables = tq
	return &tablesEnv{Env: e, t: t}
}

// process is one worker process's table side: its own connection, ledger
// and queue, as a pod has.
type process struct {
	builder *tables.Builder
	jobs    *msg.TableQueue
	reg     *prometheus.Registry
	metrics *fetch.TableMetrics
}

func (e *tablesEnv) process(store tables.Store) process {
	e.t.Helper()
	js := testenv.Connect(e.t, e.NATSURL)
	l, err := ledger.Setup(e.t.Context(), js, ledger.Config{KeepBuckets: true})
	if err != nil {
		e.t.Fatal(err)
	}
	tq, err := msg.SetupTables(e.t.Context(), js, msg.TablesConfig{AckWait: 10 * time.Second, KeepStreams: true})
	if err != nil {
		e.t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	return process{builder: tables.NewBuilder(tables.Config{Prefix: testrun.Prefix}, store, l, tq, e.Log),
		jobs: tq, reg: reg, metrics: fetch.NewTableMetrics(reg)}
}

// loop runs p's table loop until the test ends.
func (e *tablesEnv) loop(p process, concurrency int, maxDeliveries uint64) {
	l := fetch.NewTableLoop(fetch.TableConfig{Concurrency: concurrency, MaxDeliveries: maxDeliveries,
		PullWait: 200 * time.Millisecond, Backoff: func(uint64) time.Duration { return 50 * time.Millisecond }},
		p.jobs, p.builder, p.metrics, e.Log)
	ctx, cancel := context.WithCancel(context.WithoutCancel(e.t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { _ = l.Run(ctx) })
	e.t.Cleanup(func() { cancel(); wg.Wait() })
}

// fetchRun plans a run and works it to completion.
func (e *tablesEnv) fetchRun() string {
	e.t.Helper()
	out := e.Plan()
	e.Work(e.Complete(out.Run))
	return out.Run
}

func (e *tablesEnv) tablesComplete(store tables.Store, run string) func() bool {
	// Complete: the manifest is there, and then the runs row (written last).
	return func() bool {
		r, err := store.Get(e.t.Context(), tables.ManifestKey(testrun.Prefix, run))
		if err != nil {
			return false
		}
		var tm tables.Manifest
		err = json.NewDecoder(r).Decode(&tm)
		r.Close()
		if err != nil {
			return false
		}
		_, err = store.Stat(e.t.Context(), tm.RunsKey)
		return err == nil
	}
}

// snapshot is every object under prefix/tables/, by key, as a checksum.
func snapshot(t *testing.T, store tables.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for o, err := range store.List(t.Context(), testrun.Prefix+"/tables/") {
		if err != nil {
			t.Fatal(err)
		}
		r, err := store.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		_, err = io.Copy(h, r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[o.Key] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

func tableCounter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// checkTables checks a complete run's table manifest against the sealed
// run: one part per batch and per Host List page, each stored as listed,
// and the runs row.
func checkTables(t *testing.T, e *tablesEnv, store tables.Store, run string) tables.Manifest {
	t.Helper()
	// The sealed run's totals, from its manifest.json: its record may not
	// say complete yet (a finisher that died marking it).
	var sealed finish.Manifest
	mr, err := store.Get(t.Context(), objstore.ManifestKey(testrun.Prefix, run))
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(mr).Decode(&sealed)
	mr.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := store.Get(t.Context(), tables.ManifestKey(testrun.Prefix, run))
	if err != nil {
		t.Fatal(err)
	}
	var tm tables.Manifest
	err = json.NewDecoder(r).Decode(&tm)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	var det, hosts int
	for _, p := range tm.Parts {
		o, err := store.Stat(t.Context(), p.Key)
		if err != nil || o.Bytes != p.Bytes {
			t.Errorf("part %s: stored %d bytes (%v), manifest says %d", p.Key, o.Bytes, err, p.Bytes)
		}
		if !strings.Contains(p.Key, "/run="+run+"/") {
			t.Errorf("part %s is outside run %s's partition", p.Key, run)
		}
		switch p.Table {
		case tables.Detections:
			det++
		case tables.Hosts:
			hosts++
		}
	}
	if det != sealed.Totals.Batches || hosts != sealed.Totals.HostListPages {
		t.Errorf("table manifest of %s: %d detections parts and %d hosts parts, the run has %d batches and %d pages",
			run, det, hosts, sealed.Totals.Batches, sealed.Totals.HostListPages)
	}
	if tm.DetectionRows == 0 || tm.HostRows == 0 {
		t.Errorf("table manifest of %s: %d detection rows, %d host rows", run, tm.DetectionRows, tm.HostRows)
	}
	if _, err := store.Stat(t.Context(), tm.RunsKey); err != nil {
		t.Errorf("runs row %s: %v", tm.RunsKey, err)
	}
	return tm
}

// A run's tables are complete after the run, converted by several worker
// processes racing to complete them; a rebuild then writes the very same
// bytes.
func TestTablesCompleteAfterRun(t *testing.T) {
	e := setupTables(t, 120)
	e.loop(e.process(e.Store), 2, 5)
	e.loop(e.process(e.Store), 2, 5)
	run := e.fetchRun()
	testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, run), "the run's tables did not complete")
	checkTables(t, e, e.Store, run)
	fleet := snapshot(t, e.Store)

	rb := tables.NewRebuilder(tables.Config{Prefix: testrun.Prefix}, e.Store, 3, e.Log)
	for i := range 2 {
		if _, err := rb.Rebuild(t.Context(), run); err != nil {
			t.Fatal(err)
		}
		if got := snapshot(t, e.Store); !maps.Equal(got, fleet) {
			t.Fatalf("rebuild %d: tables differ from what the fleet wrote:\n got %v\nwant %v", i+1, got, fleet)
		}
	}
}

// failingStore refuses to read one object, as a bucket can.
type failingStore struct {
	tables.Store
	bad string // key suffix
}

func (s failingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if strings.HasSuffix(key, s.bad) {
		return nil, errors.New("test: unreadable object")
	}
	return s.Store.Get(ctx, key)
}

// A conversion that fails never holds up the run: it seals all the same,
// the job is given up after its deliveries with a metric, and a rebuild
// completes the tables.
func TestTableFailureNeverBlocksRun(t *testing.T) {
	e := setupTables(t, 120)
	p := e.process(failingStore{Store: e.Store, bad: "/batch-000002.xml"})
	e.loop(p, 1, 2)
	run := e.fetchRun()
	if _, err := e.Store.Stat(t.Context(), objstore.SuccessKey(testrun.Prefix, run)); err != nil {
		t.Fatalf("the run is not sealed: %v", err)
	}
	failed := map[string]string{"table": msg.TableDetections, "result": "failed"}
	testenv.Eventually(t, 60*time.Second, func() bool {
		n, err := p.jobs.TablesPending(t.Context(), run)
		return err == nil && n == 0 && tableCounter(t, p.reg, "qfetch_table_conversions_total", failed) == 1
	}, "the failing conversion was not given up")
	if e.tablesComplete(e.Store, run)() {
		t.Fatal("the tables are complete without batch 2's part")
	}
	st, err := p.builder.Status(t.Context(), run)
	if err != nil || st.Complete || st.Recorded != st.Expected-1 {
		t.Fatalf("status %+v (%v): want every part but one recorded", st, err)
	}
	if _, err := tables.NewRebuilder(tables.Config{Prefix: testrun.Prefix}, e.Store, 2, e.Log).Rebuild(t.Context(), run); err != nil {
		t.Fatal(err)
	}
	checkTables(t, e, e.Store, run)
}

// Two workers converting the same job at once give one valid part and one
// record; the complete tables stay as they were.
func TestTablesSameJobConcurrently(t *testing.T) {
	e := setupTables(t, 120)
	e.loop(e.process(e.Store), 1, 5)
	run := e.fetchRun()
	testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, run), "the run's tables did not complete")
	before := snapshot(t, e.Store)
	a, b := e.process(e.Store), e.process(e.Store)
	jobs := []tables.Job{{Run: run, Kind: msg.TableDetections, Item: "1"}, {Run: run, Kind: msg.TableHosts, Item: "1"}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 2 {
		for _, j := range jobs {
			for _, p := range []process{a, b} {
				wg.Go(func() {
					res, err := p.builder.Convert(t.Context(), j)
					if err == nil && (res.Skipped != "" || !res.Complete) {
						err = errors.New("converted nothing, or tables not complete: " + res.Skipped)
					}
					errs <- err
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := snapshot(t, e.Store); !maps.Equal(got, before) {
		t.Fatalf("tables changed:\n got %v\nwant %v", got, before)
	}
	parts, err := e.Q.TableParts(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	if rec := e.Record(run); len(parts) != rec.Totals.Batches+rec.Totals.HostListPages {
		t.Fatalf("%d part records, want %d", len(parts), rec.Totals.Batches+rec.Totals.HostListPages)
	}
	checkTables(t, e, e.Store, run)
}

// A forged job converts nothing it should not: only what the ledger names
// for the job's own run, and Host List pages only once the run is sealed.
func TestForgedTableJobs(t *testing.T) {
	e := setupTables(t, 120)
	out := e.Plan() // planned, not fetched: nothing is done or sealed
	p := e.process(e.Store)
	tests := []struct {
		name string
		job  tables.Job
	}{
		{"no such run", tables.Job{Run: "nosuchrun", Kind: msg.TableDetections, Item: "1"}},
		{"batch not done", tables.Job{Run: out.Run, Kind: msg.TableDetections, Item: "1"}},
		{"pages of an unsealed run", tables.Job{Run: out.Run, Kind: msg.TableHosts, Item: "1"}},
		{"bad item", tables.Job{Run: out.Run, Kind: msg.TableDetections, Item: "01"}},
		{"bad page", tables.Job{Run: out.Run, Kind: msg.TableHosts, Item: "1.2"}},
		{"bad kind", tables.Job{Run: out.Run, Kind: tables.Runs, Item: "1"}},
		{"bad run", tables.Job{Run: "a.b", Kind: msg.TableDetections, Item: "1"}},
		{"path in item", tables.Job{Run: out.Run, Kind: msg.TableHosts, Item: "../1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.builder.Convert(t.Context(), tc.job)
			if err == nil {
				t.Fatal("converted")
			}
		})
	}
	// A job for another run than its subject's, through the loop: ended
	// (Term), not redelivered for ever.
	body := []byte(`{"v":1,"run":"` + out.Run + `","kind":"hosts","item":"1"}`)
	if _, err := e.JS.PublishMsg(t.Context(), &nats.Msg{Subject: "qfetch.table.otherrun", Data: body}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.JS.PublishMsg(t.Context(), &nats.Msg{Subject: "qfetch.table.otherrun", Data: []byte("garbled")}); err != nil {
		t.Fatal(err)
	}
	e.loop(p, 1, 3)
	testenv.Eventually(t, 30*time.Second, func() bool {
		n, err := p.jobs.TablesPending(t.Context(), "otherrun")
		return err == nil && n == 0
	}, "the forged jobs were not ended")
	if got := tableCounter(t, p.reg, "qfetch_table_conversions_total", map[string]string{"table": "unknown", "result": "failed"}); got != 2 {
		t.Errorf("%v forged jobs counted as failed, want 2", got)
	}
	if got := snapshot(t, e.Store); len(got) != 0 {
		t.Fatalf("forged jobs wrote %v", got)
	}
	if n, err := e.Q.CountTableParts(t.Context(), out.Run); err != nil || n != 0 {
		t.Fatalf("%d part records (%v)", n, err)
	}
}

// tables rebuild --all rebuilds every sealed run from the bucket alone:
// in MinIO, and in a directory bucket holding the same runs, byte for byte
// what the fleet wrote.
func TestTablesRebuildAll(t *testing.T) {
	e := setupTables(t, 120)
	e.loop(e.process(e.Store), 2, 5)
	var runs []string
	for range 2 {
		run := e.fetchRun()
		testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, run), "the run's tables did not complete")
		runs = append(runs, run)
		e.Sim.Advance(24 * time.Hour)
	}
	fleet := snapshot(t, e.Store)

	dir, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for o, err := range e.Store.List(t.Context(), testrun.Prefix+"/") {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(o.Key, testrun.Prefix+"/tables/") {
			if err := e.Store.Delete(t.Context(), o.Key); err != nil {
				t.Fatal(err)
			}
			continue
		}
		r, err := e.Store.Get(t.Context(), o.Key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = dir.Put(t.Context(), o.Key, r, objstore.PutOptions{})
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, store := range []tables.Store{e.Store, dir} {
		rb := tables.NewRebuilder(tables.Config{Prefix: testrun.Prefix}, store, 2, e.Log)
		var rebuilt []string
		err := rb.RebuildAll(t.Context(), func(run string, _ tables.Manifest, err error) {
			if err != nil {
				t.Errorf("run %s: %v", run, err)
			}
			rebuilt = append(rebuilt, run)
		})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(rebuilt, ",") != strings.Join(runs, ",") {
			t.Fatalf("rebuilt %v, want %v", rebuilt, runs)
		}
		if got := snapshot(t, store); !maps.Equal(got, fleet) {
			t.Fatalf("rebuilt tables differ from the fleet's:\n got %v\nwant %v", got, fleet)
		}
	}
}

// A split batch's halves are the run's parts, named for their XML
// (part-batch-000001.1 and .2); the whole batch, never stored, has none.
func TestTablesSplitBatch(t *testing.T) {
	e := setupTablesWith(t, testrun.Options{Hosts: 100, BatchSize: 100, PageSize: 70,
		Sim: qualysim.Config{Faults: qualysim.Faults{StallFor: time.Minute}}})
	if err := e.Sim.ForceFault(qualysim.Detection, qualysim.FaultStall, 2); err != nil {
		t.Fatal(err)
	}
	e.loop(e.process(e.Store), 1, 5)
	out := e.Plan()
	p := e.Parts("")
	p.Finish = e.Finisher()
	w := p.Worker(fetch.Config{Slots: 1, SplitAfter: 2, PullWait: 200 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx, ctx) })
	testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, out.Run), "the run's tables did not complete")
	cancel()
	wg.Wait()
	tm := checkTables(t, e, e.Store, out.Run)
	var items []string
	for _, p := range tm.Parts {
		if p.Table == tables.Detections {
			items = append(items, p.Item+"="+p.Key[strings.LastIndex(p.Key, "/")+1:])
		}
	}
	if want := "1.1=part-batch-000001.1.parquet,1.2=part-batch-000001.2.parquet"; strings.Join(items, ",") != want {
		t.Fatalf("detections parts %v, want %s", items, want)
	}
}
