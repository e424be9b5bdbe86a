package finish_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
)

// sealedCalls records the Sealed hook's calls.
type sealedCalls struct {
	mu    sync.Mutex
	calls []string
}

func (s *sealedCalls) Sealed(_ context.Context, run string, batches []string, pages []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, run+" batches="+strings.Join(batches, ",")+" pages="+strconv.Itoa(len(pages)))
	return nil
}

// storeRun records run as the planner and workers would leave it: one
// listing page stored, a batch per entry of returned (the IDs its answer
// held) stored and done, planning over; then fin finishes it.
func (e *env) storeRun(fin *finish.Finisher, id string, before time.Time, backfill string, returned ...string) ledger.RunRecord {
	e.t.Helper()
	ctx := e.t.Context()
	if _, err := e.store.Put(ctx, objstore.HostListPageKey(prefix, id, 1), strings.NewReader("<page/>"), objstore.PutOptions{}); err != nil {
		e.t.Fatal(err)
	}
	for i, ids := range returned {
		n := i + 1
		o, err := e.store.Put(ctx, objstore.DetectionKey(prefix, id, n, 1), strings.NewReader("<answer "+ids+"/>"), objstore.PutOptions{})
		if err != nil {
			e.t.Fatal(err)
		}
		got, err := hostids.Count(ids)
		if err != nil {
			e.t.Fatal(err)
		}
		o.Hosts = got
		if err := e.q.MarkDone(ctx, ledger.BatchResult{Run: id, Batch: strconv.Itoa(n), HostsRequested: got, HostsReturned: got,
			IDs: ids, Objects: []objstore.Object{o}}); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := e.q.CreateRun(ctx, ledger.RunRecord{ID: id, Before: before, State: ledger.RunFetching, PlanningComplete: true,
		BatchesPlanned: len(returned), Backfill: backfill}); err != nil {
		e.t.Fatal(err)
	}
	if err := fin.TryFinish(ctx, id); err != nil {
		e.t.Fatal(err)
	}
	return e.run(id)
}

// TestKBPassSealed: a KnowledgeBase pass is sealed like a run under
// kb/<pass>/, its manifest says its kind and the QIDs known after it,
// accumulated over passes; kb/latest.json follows the passes and
// latest.json the detection runs, never the other way round.
func TestKBPassSealed(t *testing.T) {
	e := setup(t, 10, 0)
	tables := &sealedCalls{}
	fin := e.parts("f", nil).Finisher(finish.Config{Tables: tables})
	t0 := e.sim.Clock().Now().Truncate(time.Second)
	const pass1, pass2, run = "kb-20260101T000000Z-aaaaaa", "kb-20260102T000000Z-bbbbbb", "20260101T120000Z-cccccc"

	rec := e.storeRun(fin, pass1, t0, "500", "1-3", "10")
	if rec.State != ledger.RunComplete {
		t.Fatalf("pass 1 is %s", rec.State)
	}
	var m finish.Manifest
	e.getJSON(objstore.ManifestKey(prefix, pass1), &m)
	if m.Kind != finish.KindKB || m.KnownQIDs != "1-3,10,500" {
		t.Fatalf("pass 1 manifest kind %q known %q", m.Kind, m.KnownQIDs)
	}
	if len(m.HostList) != 1 || m.HostList[0].Key != prefix+"/kb/"+pass1+"/qids/page-000001.xml" {
		t.Errorf("pass 1 listing pages %+v", m.HostList)
	}
	for _, b := range m.Batches {
		if len(b.Objects) != 1 || !strings.HasPrefix(b.Objects[0].Key, prefix+"/kb/"+pass1+"/vulns/") || b.IDs == "" {
			t.Errorf("pass 1 batch %+v", b)
		}
	}
	if _, err := e.store.Stat(t.Context(), objstore.SuccessKey(prefix, pass1)); err != nil {
		t.Fatalf("_SUCCESS of pass 1: %v", err)
	}
	var l finish.Latest
	e.getJSON(objstore.KBLatestKey(prefix), &l)
	if l.Run != pass1 || l.Manifest != objstore.ManifestKey(prefix, pass1) {
		t.Fatalf("kb/latest.json %+v", l)
	}
	if _, err := e.store.Stat(t.Context(), objstore.LatestKey(prefix)); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("a KB pass wrote latest.json: %v", err)
	}

	// A detection run moves latest.json, not kb/latest.json.
	if rec := e.storeRun(fin, run, t0.Add(time.Hour), "", "4-9"); rec.State != ledger.RunComplete {
		t.Fatalf("run is %s", rec.State)
	}
	var dm finish.Manifest
	e.getJSON(objstore.ManifestKey(prefix, run), &dm)
	if dm.Kind != "" || dm.KnownQIDs != "" {
		t.Errorf("a detection run's manifest has kind %q known %q", dm.Kind, dm.KnownQIDs)
	}
	e.getJSON(objstore.LatestKey(prefix), &l)
	if l.Run != run {
		t.Fatalf("latest.json %+v", l)
	}
	e.getJSON(objstore.KBLatestKey(prefix), &l)
	if l.Run != pass1 {
		t.Fatalf("a detection run moved kb/latest.json: %+v", l)
	}

	// The second pass knows what the first knew, and what it adds.
	e.storeRun(fin, pass2, t0.Add(2*time.Hour), "", "2,11")
	e.getJSON(objstore.ManifestKey(prefix, pass2), &m)
	if m.Kind != finish.KindKB || m.KnownQIDs != "1-3,10,11,500" {
		t.Fatalf("pass 2 manifest kind %q known %q", m.Kind, m.KnownQIDs)
	}
	e.getJSON(objstore.KBLatestKey(prefix), &l)
	if l.Run != pass2 {
		t.Fatalf("kb/latest.json %+v after pass 2", l)
	}
	e.getJSON(objstore.LatestKey(prefix), &l)
	if l.Run != run {
		t.Fatalf("a KB pass moved latest.json: %+v", l)
	}

	// The tables hook gets a pass's batches and no listing pages (no hosts
	// jobs), a run's batches and pages.
	want := []string{pass1 + " batches=1,2 pages=0", run + " batches=1 pages=1", pass2 + " batches=1 pages=0"}
	tables.mu.Lock()
	defer tables.mu.Unlock()
	if !slices.Equal(tables.calls, want) {
		t.Errorf("tables hook calls %q, want %q", tables.calls, want)
	}
}
