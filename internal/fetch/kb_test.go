package fetch_test

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// pass is the KnowledgeBase pass of these tests.
const pass = "kb-20260110T000000Z-test"

// detectionsAsKB answers a KnowledgeBase batch with the detection answer
// for the same IDs: the simulator's host IDs stand for QIDs, so the
// worker's whole KB path (claims, uploads, records, verdicts) runs against
// real servers, and the truth is the simulator's detection truth.
type detectionsAsKB struct {
	c *qualys.Client
	// extra is added to every call's IDs: an answer with a QID the batch
	// did not ask for.
	extra uint64
	calls atomic.Int64
}

func (f *detectionsAsKB) KBPager(q qualys.KBQuery) *qualys.DetectionPager {
	f.calls.Add(1)
	s, err := hostids.Parse(q.IDs)
	if err != nil {
		panic(err) // the worker parsed them already
	}
	ids := s.IDs()
	if f.extra != 0 {
		ids = append(ids, f.extra)
	}
	return f.c.DetectionPager(qualys.DetectionQuery{IDs: ids})
}

// tableJobs records the table jobs a worker publishes.
type tableJobs struct {
	mu   sync.Mutex
	jobs []string
}

func (j *tableJobs) PublishTableJob(_ context.Context, run, kind, item string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.jobs = append(j.jobs, run+"/"+kind+"/"+item)
	return nil
}

func (j *tableJobs) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Sorted(slices.Values(j.jobs))
}

// addKB records a KnowledgeBase pass asking for ids, planned whole, and
// publishes its batches of size as the planner would.
func (e *env) addKB(ids []uint64, size int) []msg.Batch {
	e.t.Helper()
	n := (len(ids) + size - 1) / size
	if _, err := e.q.CreateRun(e.t.Context(), ledger.RunRecord{ID: pass, Before: e.before, State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: n, HostsPlanned: len(ids)}); err != nil {
		e.t.Fatal(err)
	}
	pub := e.q.Publisher(msg.PublisherOptions{})
	var out []msg.Batch
	for i := 0; len(ids) > 0; i++ {
		k := min(size, len(ids))
		b := msg.Batch{Kind: msg.KindKB, Run: pass, Number: i + 1, Before: e.before, IDs: hostids.Of(ids[:k]).String(), Hosts: k}
		if err := pub.Publish(e.t.Context(), b); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, b)
		ids = ids[k:]
	}
	if err := pub.Wait(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// kbWorker is a pod whose KnowledgeBase client is kb; fin nil finishes
// nothing.
func (e *env) kbWorker(owner string, kb fetch.KnowledgeBase, fin fetch.Finisher, tables fetch.TablePublisher, cfg fetch.Config) *fetch.Worker {
	e.t.Helper()
	p := e.podParts(owner, "", e.o.ackWait)
	if fin == nil {
		fin = testrun.NoFinish
	}
	d := fetch.Deps{Queue: p.Queue.Queue, Ledger: p.Queue.Ledger, Fleet: p.Queue.Ledger.Fleet(owner),
		Publisher: func() fetch.Publisher { return p.Queue.Publisher(msg.PublisherOptions{}) },
		API:       p.Qualys, KB: kb, Store: p.Store, Finish: fin, Log: p.Log}
	if tables != nil {
		d.Tables = tables
	}
	cfg.Prefix, cfg.Owner = p.Prefix, owner
	return fetch.New(podConfig(cfg), d)
}

func (e *env) doneOf(id string) int {
	n, err := e.q.CountDone(e.t.Context(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// keys lists what the bucket holds under prefix.
func (e *env) keys(prefix string) []string {
	e.t.Helper()
	var out []string
	for o, err := range e.store.List(e.t.Context(), prefix) {
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, o.Key)
	}
	return out
}

// TestKBBatchStoredUnderItsPass: a KnowledgeBase batch is fetched through
// the KnowledgeBase client, its answer lands under kb/<pass>/vulns/ (never
// runs/), its result holds the QIDs the answer returned and the VULN count,
// and a kb table job follows each.
func TestKBBatchStoredUnderItsPass(t *testing.T) {
	e := setup(t, opts{hosts: 300, noBatches: true})
	ids := slices.Collect(e.sim.HostListTruth(e.after, e.before))
	batches := e.addKB(ids, 100)
	kb := &detectionsAsKB{c: e.r.NewClient(e.sim.Password())}
	jobs := &tableJobs{}
	stop := e.start(e.kbWorker("w", kb, nil, jobs, fetch.Config{Slots: 2}))
	testenv.Eventually(t, 60*time.Second, func() bool { return e.doneOf(pass) == len(batches) && e.queued() == 0 },
		"KB batches not all done and acked")
	stop()
	all, err := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	if err != nil {
		t.Fatal(err)
	}
	results, err := e.q.DoneBatches(t.Context(), pass)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(batches) {
		t.Fatalf("%d results, want %d", len(results), len(batches))
	}
	var wantJobs []string
	for _, b := range batches {
		i := slices.IndexFunc(results, func(r ledger.BatchResult) bool { return r.Batch == b.Key() })
		if i < 0 {
			t.Fatalf("no result for batch %s", b.Key())
		}
		r := results[i]
		f, err := qualysim.ParseIDs(b.IDs)
		if err != nil {
			t.Fatal(err)
		}
		want := e.sim.DetectionCounts(qualysim.Filter{IDs: f, Statuses: all})
		if wantIDs := hostids.Of(slices.Collect(maps.Keys(want))).String(); r.IDs != wantIDs || r.HostsReturned != len(want) || r.HostsRequested != b.Hosts {
			t.Errorf("batch %s: IDs %q returned %d requested %d; want IDs %q returned %d requested %d",
				b.Key(), r.IDs, r.HostsReturned, r.HostsRequested, wantIDs, len(want), b.Hosts)
		}
		key := objstore.DetectionKey(testrun.Prefix, pass, b.Number, 1)
		if !strings.HasPrefix(key, testrun.Prefix+"/kb/"+pass+"/vulns/") {
			t.Fatalf("key %s is not under the pass's vulns/", key)
		}
		if len(r.Objects) != 1 || r.Objects[0].Key != key || r.Objects[0].Hosts != len(want) {
			t.Fatalf("batch %s objects %+v, want one at %s", b.Key(), r.Objects, key)
		}
		if o, err := e.store.Stat(t.Context(), key); err != nil || o.Bytes != r.Objects[0].Bytes {
			t.Fatalf("%s: %+v %v", key, o, err)
		}
		wantJobs = append(wantJobs, pass+"/"+msg.TableKB+"/"+b.Key())
	}
	if got := e.keys(testrun.Prefix + "/runs/"); len(got) != 0 {
		t.Errorf("a KB pass wrote under runs/: %v", got)
	}
	if got := jobs.list(); !slices.Equal(got, slices.Sorted(slices.Values(wantJobs))) {
		t.Errorf("table jobs %v, want %v", got, wantJobs)
	}
	if n := kb.calls.Load(); n != int64(len(batches)) {
		t.Errorf("%d KnowledgeBase calls, want %d", n, len(batches))
	}
}

// TestKBForeignQIDRefused: an answer holding a QID the batch did not ask
// for is malformed: nothing of it is stored or recorded, the batch is
// charged like any bad answer and ends in the dead letters.
func TestKBForeignQIDRefused(t *testing.T) {
	e := setup(t, opts{hosts: 300, noBatches: true, maxFailures: 2})
	ids := slices.Collect(e.sim.HostListTruth(e.after, e.before))
	all, err := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	if err != nil {
		t.Fatal(err)
	}
	// A "QID" outside the batch that the answer does hold.
	var foreign uint64
	for id := range e.sim.DetectionCounts(qualysim.Filter{Statuses: all}) {
		if id > ids[99] {
			foreign = id
			break
		}
	}
	if foreign == 0 {
		t.Fatal("no host with detections outside the batch")
	}
	e.addKB(ids[:100], 100)
	kb := &detectionsAsKB{c: e.r.NewClient(e.sim.Password()), extra: foreign}
	stop := e.start(e.kbWorker("w", kb, nil, nil, fetch.Config{Slots: 1}))
	testenv.Eventually(t, 60*time.Second, func() bool {
		dl, err := e.q.DeadLetters(t.Context(), pass)
		return err == nil && len(dl) == 1 && e.queued() == 0
	}, "the batch with a foreign QID is not dead-lettered")
	stop()
	dl, err := e.q.DeadLetters(t.Context(), pass)
	if err != nil {
		t.Fatal(err)
	}
	if dl[0].Class != "retryable" {
		t.Errorf("dead letter %+v", dl[0])
	}
	if n := kb.calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2 (MaxFailures)", n)
	}
	if got := e.keys(testrun.Prefix + "/"); len(got) != 0 {
		t.Errorf("stored from an answer with a foreign QID: %v", got)
	}
	if e.doneOf(pass) != 0 || e.incompleteUploads() != 0 {
		t.Errorf("done %d, incomplete uploads %d", e.doneOf(pass), e.incompleteUploads())
	}
}

// TestForgedKBKindNeverWrites: a KnowledgeBase batch naming a detection
// run, and a detection batch naming a KB pass, are dead-lettered as
// permanent before anything is asked, claimed or written; the genuine
// batch of the pass is fetched.
func TestForgedKBKindNeverWrites(t *testing.T) {
	e := setup(t, opts{hosts: 100, noBatches: true})
	if _, err := e.q.CreateRun(t.Context(), ledger.RunRecord{ID: run, Before: e.before, State: ledger.RunFetching}); err != nil {
		t.Fatal(err)
	}
	ids := slices.Collect(e.sim.HostListTruth(e.after, e.before))
	genuine := e.addKB(ids, len(ids))[0]
	kbOnRun := genuine
	kbOnRun.Run, kbOnRun.Number, kbOnRun.V = run, 7, 1
	runOnKB := genuine
	runOnKB.Kind, runOnKB.Number, runOnKB.V = "", 8, 1
	for _, b := range []msg.Batch{kbOnRun, runOnKB} {
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.js.Publish(t.Context(), msg.BatchSubject(b.Run), data); err != nil {
			t.Fatal(err)
		}
	}
	kb := &detectionsAsKB{c: e.r.NewClient(e.sim.Password())}
	stop := e.start(e.kbWorker("w", kb, nil, nil, fetch.Config{Slots: 2}))
	testenv.Eventually(t, 30*time.Second, func() bool {
		a, _ := e.q.DeadLetters(t.Context(), run)
		b, _ := e.q.DeadLetters(t.Context(), pass)
		return len(a) == 1 && len(b) == 1 && e.doneOf(pass) == 1 && e.queued() == 0
	}, "forged batches not dead-lettered beside the genuine one done")
	stop()
	for _, id := range []string{run, pass} {
		dl, err := e.q.DeadLetters(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if dl[0].Class != "permanent" {
			t.Errorf("%s: dead letter %+v", id, dl[0])
		}
	}
	if n := kb.calls.Load(); n != 1 {
		t.Errorf("%d KnowledgeBase calls, want 1 (the genuine batch)", n)
	}
	if n := e.sim.Stats().Endpoints[qualysim.Detection].Requests; n != 1 {
		t.Errorf("%d detection calls, want 1 (the genuine batch, through the stand-in)", n)
	}
	if got := e.keys(testrun.Prefix + "/"); !slices.Equal(got, []string{objstore.DetectionKey(testrun.Prefix, pass, 1, 1)}) {
		t.Errorf("bucket holds %v, want the genuine batch's object only", got)
	}
	if e.doneOf(run) != 0 {
		t.Errorf("the detection run has a done batch")
	}
	for _, k := range []string{"7", "8"} {
		for _, id := range []string{run, pass} {
			if _, ok, err := e.q.GetClaim(t.Context(), id, k); err != nil || ok {
				t.Errorf("claim %s/%s taken (%v)", id, k, err)
			}
		}
	}
}

// TestKBPassAndRunTogether: a KnowledgeBase pass and a detection run in
// flight at once share the fleet: two pods with two slots each never make
// more calls at once than the fleet's cap, and both complete.
func TestKBPassAndRunTogether(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 1200, batchSize: 100, maxInFlight: 2}, d)
	e.setRun(ledger.RunRecord{ID: run, After: e.after, Before: e.before, State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: len(e.batch)})
	ids := slices.Collect(e.sim.HostListTruth(e.after, e.before))
	kbBatches := e.addKB(ids, 100)
	kb := &detectionsAsKB{c: e.r.NewClient(e.sim.Password())}
	for i := range 2 {
		owner := []string{"pod-a", "pod-b"}[i]
		e.start(e.kbWorker(owner, kb, e.r.Finisher(), nil, fetch.Config{Slots: 2}))
	}
	testenv.Eventually(t, 90*time.Second, func() bool {
		return e.r.Complete(run)() && e.r.Complete(pass)()
	}, "the run and the KB pass not both complete")
	if peak, _ := d.stats(); peak > 2 {
		t.Errorf("%d calls at once, the fleet's cap is 2", peak)
	}
	if n := kb.calls.Load(); n < int64(len(kbBatches)) {
		t.Errorf("%d KnowledgeBase calls for %d batches", n, len(kbBatches))
	}
	for _, k := range []string{objstore.SuccessKey(testrun.Prefix, run), objstore.SuccessKey(testrun.Prefix, pass)} {
		if _, err := e.store.Stat(t.Context(), k); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
}

// TestKBRealParts fetches a KnowledgeBase batch from the simulator's
// KnowledgeBase endpoint through the real client: the QIDs the
// simulator's detections use, every one of which its KnowledgeBase holds.
func TestKBRealParts(t *testing.T) {
	e := setup(t, opts{hosts: 50, noBatches: true})
	if !kbClientReady(e.r.Client) {
		t.Skip("qualys.Client.KBPager is not implemented in this build")
	}
	if err := kbServed(t.Context(), e.r.Client); err != nil {
		t.Skipf("the simulator does not serve the KnowledgeBase in this build: %v", err)
	}
	used := map[uint64]bool{}
	for _, hd := range e.sim.DetectionRows(qualysim.Filter{}) {
		for _, d := range hd.Detections {
			used[uint64(d.QID)] = true
		}
	}
	qids := slices.Sorted(maps.Keys(used))
	qids = qids[:min(len(qids), 300)]
	batches := e.addKB(qids, 150)
	stop := e.start(e.kbWorker("w", e.r.Client, nil, nil, fetch.Config{Slots: 2}))
	testenv.Eventually(t, 60*time.Second, func() bool { return e.doneOf(pass) == len(batches) && e.queued() == 0 },
		"KB batches not all done")
	stop()
	results, err := e.q.DoneBatches(t.Context(), pass)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		b := batches[slices.IndexFunc(batches, func(b msg.Batch) bool { return b.Key() == r.Batch })]
		if r.IDs != b.IDs || r.HostsReturned != b.Hosts {
			t.Errorf("batch %s: returned %q (%d), asked %q", r.Batch, r.IDs, r.HostsReturned, b.IDs)
		}
		for _, o := range r.Objects {
			rd, err := e.store.Get(t.Context(), o.Key)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			v := qualys.NewValidator(rd, qualys.ValidatorConfig{Root: qualys.RootKB, OnID: func(id uint64) { got = append(got, id) }})
			_, err = io.Copy(io.Discard, v)
			rd.Close()
			if err != nil || len(got) != o.Hosts {
				t.Errorf("%s: %d QIDs, recorded %d (%v)", o.Key, len(got), o.Hosts, err)
			}
		}
	}
}

// kbClientReady reports whether c's KBPager is there (a build before the
// KnowledgeBase client panics in it).
func kbClientReady(c *qualys.Client) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	c.KBPager(qualys.KBQuery{IDs: "1"})
	return true
}

// kbServed asks the KnowledgeBase for one QID and reads the answer whole.
func kbServed(ctx context.Context, c *qualys.Client) error {
	resp, err := c.KBPager(qualys.KBQuery{IDs: "1"}).Open(ctx, nil)
	if err != nil {
		return err
	}
	defer resp.Close()
	_, err = io.Copy(io.Discard, resp)
	return err
}
