package finish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/testrun"
)

// sealEnv is a run built by hand in the ledger (NATS) and the bucket
// (MinIO): the objects and records a planner and workers would have left,
// leftovers included, without running them.
type sealEnv struct {
	t   *testing.T
	r   *testrun.Env
	run string
}

const sealRun = "20260110T000000Z-sealed"

func sealSetup(t *testing.T) *sealEnv {
	return &sealEnv{t: t, r: testrun.New(t, testrun.Options{Hosts: 10}), run: sealRun}
}

// key is the run's key for name (relative to the run's prefix).
func (e *sealEnv) key(name string) string { return objstore.RunPrefix(prefix, e.run) + name }

// put stores name with a body of its own, size bytes long.
func (e *sealEnv) put(name string, size int) objstore.Object {
	e.t.Helper()
	body := strings.Repeat(name+"\n", size/len(name+"\n")+1)[:size]
	o, err := e.r.Store.Put(e.t.Context(), e.key(name), strings.NewReader(body), objstore.PutOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	o.Hosts = 1
	return o
}

// open records the run, planned: batches, with pages recorded (each under
// the page number its key names; a zero Key is a page not recorded) by the
// planner pass plannerID, whose final walk ended at the last of them ("":
// a record of an older version, which names no last page).
func (e *sealEnv) open(batches int, plannerID string, pages ...objstore.Object) {
	e.t.Helper()
	last := 0
	for _, o := range pages {
		if o.Key == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(path.Base(o.Key), "page-%06d.xml", &n); err != nil {
			e.t.Fatalf("page key %s: %v", o.Key, err)
		}
		if err := e.r.Q.MarkPage(e.t.Context(), e.run, n, o); err != nil {
			e.t.Fatal(err)
		}
		last = max(last, n)
	}
	if plannerID == "" {
		last = 0
	}
	_, err := e.r.Q.CreateRun(e.t.Context(), ledger.RunRecord{ID: e.run, State: ledger.RunFetching,
		Before: time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC), PlanningComplete: true, BatchesPlanned: batches,
		HostsPlanned: batches, PlannerID: plannerID, HostListPages: last})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *sealEnv) done(batch string, objs ...objstore.Object) {
	e.t.Helper()
	if err := e.r.Q.MarkDone(e.t.Context(), ledger.BatchResult{Run: e.run, Batch: batch, HostsRequested: 1,
		HostsReturned: len(objs), Objects: objs, Delivery: 1, At: time.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *sealEnv) split(batch string) {
	e.t.Helper()
	if err := e.r.Q.MarkSplit(e.t.Context(), e.run, ledger.Split{Batch: batch,
		Halves: [2]string{batch + ".1", batch + ".2"}, At: time.Now()}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *sealEnv) finisher(owner string, stale time.Duration, store finish.Store) *finish.Finisher {
	return finish.New(finish.Config{Prefix: prefix, Owner: owner, StaleClaim: stale}, e.r.Q, store, slog.New(slog.DiscardHandler))
}

// stored is every object under the run's prefix, by name: its ETag and
// size, which change with any write.
func (e *sealEnv) stored() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for o, err := range e.r.Store.List(e.t.Context(), objstore.RunPrefix(prefix, e.run)) {
		if err != nil {
			e.t.Fatal(err)
		}
		out[strings.TrimPrefix(o.Key, objstore.RunPrefix(prefix, e.run))] = fmt.Sprintf("%s/%d", o.ETag, o.Bytes)
	}
	return out
}

func (e *sealEnv) manifest() (finish.Manifest, bool) {
	e.t.Helper()
	r, err := e.r.Store.Get(e.t.Context(), e.key("manifest.json"))
	if errors.Is(err, objstore.ErrNotFound) {
		return finish.Manifest{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	var m finish.Manifest
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		e.t.Fatal(err)
	}
	return m, true
}

// checkSealed checks that the run is complete and its detections/ and
// hostlist/ hold exactly the manifest's objects, each of the manifest's
// size, and returns the manifest's host list and detection names.
func (e *sealEnv) checkSealed() (hostlist, detections []string) {
	e.t.Helper()
	if rec, err := e.r.Q.GetRun(e.t.Context(), e.run); err != nil || rec.State != ledger.RunComplete {
		e.t.Fatalf("run record %+v, %v; want complete", rec, err)
	}
	if _, err := e.r.Store.Stat(e.t.Context(), e.key("_SUCCESS")); err != nil {
		e.t.Fatalf("_SUCCESS: %v", err)
	}
	m, ok := e.manifest()
	if !ok {
		e.t.Fatal("no manifest")
	}
	listed := map[string]int64{}
	for _, o := range m.HostList {
		listed[o.Key] = o.Bytes
		hostlist = append(hostlist, strings.TrimPrefix(o.Key, objstore.RunPrefix(prefix, e.run)))
	}
	for _, b := range m.Batches {
		for _, o := range b.Objects {
			listed[o.Key] = o.Bytes
			detections = append(detections, strings.TrimPrefix(o.Key, objstore.RunPrefix(prefix, e.run)))
		}
	}
	held := map[string]int64{}
	for _, dir := range []string{"detections/", "hostlist/"} {
		for o, err := range e.r.Store.List(e.t.Context(), e.key(dir)) {
			if err != nil {
				e.t.Fatal(err)
			}
			held[o.Key] = o.Bytes
		}
	}
	if !maps.Equal(listed, held) {
		e.t.Fatalf("the manifest lists\n%v\nthe run's prefix holds\n%v", listed, held)
	}
	return hostlist, detections
}

// TestSealRemovesWhatTheResultDoesNotName: after _SUCCESS the run's
// detections/ and hostlist/ hold exactly the manifest's objects (issue 16,
// case 2): a split batch's own page, a shorter redelivery's stale tail
// page and Host List pages beyond the planner's final walk are removed;
// a run planned by an older version keeps its unrecorded pages, listed.
func TestSealRemovesWhatTheResultDoesNotName(t *testing.T) {
	tests := []struct {
		name      string
		plannerID string
		// extra are objects stored beside the run's own, by name.
		extra         []string
		build         func(e *sealEnv, pages []objstore.Object)
		wantHostList  []string
		wantDetection []string
	}{
		{
			name:      "split parent's page",
			plannerID: "pass-1",
			extra:     []string{"detections/batch-000001.xml"},
			build: func(e *sealEnv, pages []objstore.Object) {
				e.open(2, "pass-1", pages...)
				e.split("1")
				e.done("1.1", e.put("detections/batch-000001.1.xml", 300))
				e.done("1.2", e.put("detections/batch-000001.2.xml", 200))
				e.done("2", e.put("detections/batch-000002.xml", 100))
			},
			wantHostList:  []string{"hostlist/page-000001.xml", "hostlist/page-000002.xml"},
			wantDetection: []string{"detections/batch-000001.1.xml", "detections/batch-000001.2.xml", "detections/batch-000002.xml"},
		},
		{
			name:      "stale tail page of a longer attempt",
			plannerID: "pass-1",
			extra:     []string{"detections/batch-000002-p0002.xml", "detections/batch-000002-p0003.xml"},
			build: func(e *sealEnv, pages []objstore.Object) {
				e.open(2, "pass-1", pages...)
				e.done("1", e.put("detections/batch-000001.xml", 100), e.put("detections/batch-000001-p0002.xml", 50))
				e.done("2", e.put("detections/batch-000002.xml", 100))
			},
			wantHostList:  []string{"hostlist/page-000001.xml", "hostlist/page-000002.xml"},
			wantDetection: []string{"detections/batch-000001.xml", "detections/batch-000001-p0002.xml", "detections/batch-000002.xml"},
		},
		{
			name:      "host list page beyond the final walk",
			plannerID: "pass-2",
			extra:     []string{"hostlist/page-000003.xml"},
			build: func(e *sealEnv, pages []objstore.Object) {
				e.open(1, "pass-2", pages...)
				e.done("1", e.put("detections/batch-000001.xml", 100))
			},
			wantHostList:  []string{"hostlist/page-000001.xml", "hostlist/page-000002.xml"},
			wantDetection: []string{"detections/batch-000001.xml"},
		},
		{
			name:      "unrecorded page of an older version, before the resume",
			plannerID: "pass-2",
			build: func(e *sealEnv, pages []objstore.Object) {
				// Page 1 was stored by a version that recorded no pages;
				// this version resumed the run from page 2.
				e.open(1, "pass-2", pages[1:]...)
				e.done("1", e.put("detections/batch-000001.xml", 100))
			},
			wantHostList:  []string{"hostlist/page-000001.xml", "hostlist/page-000002.xml"},
			wantDetection: []string{"detections/batch-000001.xml"},
		},
		{
			name:  "older record: an unrecorded page is kept and listed",
			extra: []string{"hostlist/page-000003.xml"},
			build: func(e *sealEnv, pages []objstore.Object) {
				e.open(1, "", pages...)
				e.done("1", e.put("detections/batch-000001.xml", 100))
			},
			wantHostList:  []string{"hostlist/page-000001.xml", "hostlist/page-000002.xml", "hostlist/page-000003.xml"},
			wantDetection: []string{"detections/batch-000001.xml"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := sealSetup(t)
			pages := []objstore.Object{e.put("hostlist/page-000001.xml", 400), e.put("hostlist/page-000002.xml", 300)}
			for _, name := range tt.extra {
				e.put(name, 77)
			}
			tt.build(e, pages)
			if err := e.finisher("f", 0, e.r.Store).TryFinish(t.Context(), e.run); err != nil {
				t.Fatal(err)
			}
			hostlist, detections := e.checkSealed()
			if !slices.Equal(hostlist, tt.wantHostList) || !slices.Equal(detections, tt.wantDetection) {
				t.Fatalf("manifest lists\n%q\n%q\nwant\n%q\n%q", hostlist, detections, tt.wantHostList, tt.wantDetection)
			}
		})
	}
}

// TestSealRefusesWithoutItsObjects: an object the result names is missing,
// or holds other bytes than recorded: the run cannot be sealed. The error
// is permanent and names the object; neither manifest nor _SUCCESS is
// written, and nothing is removed.
func TestSealRefusesWithoutItsObjects(t *testing.T) {
	tests := []struct {
		name  string
		build func(e *sealEnv, page1 objstore.Object) (culprit string)
	}{
		{"missing page", func(e *sealEnv, page1 objstore.Object) string {
			o := e.put("detections/batch-000001-p0002.xml", 50)
			if err := e.r.Store.Delete(e.t.Context(), o.Key); err != nil {
				e.t.Fatal(err)
			}
			e.open(1, "pass-1", page1)
			e.done("1", e.put("detections/batch-000001.xml", 100), o)
			return o.Key
		}},
		{"other size", func(e *sealEnv, page1 objstore.Object) string {
			o := e.put("detections/batch-000001.xml", 100)
			e.put("detections/batch-000001.xml", 101)
			e.open(1, "pass-1", page1)
			e.done("1", o)
			return o.Key
		}},
		{"missing host list page", func(e *sealEnv, page1 objstore.Object) string {
			page2 := objstore.Object{Key: e.key("hostlist/page-000002.xml"), Bytes: 10, SHA256: "ab", Hosts: 1}
			e.open(1, "pass-1", page1, page2)
			e.done("1", e.put("detections/batch-000001.xml", 100))
			return page2.Key
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := sealSetup(t)
			leftover := e.put("detections/batch-000007.xml", 10)
			culprit := tt.build(e, e.put("hostlist/page-000001.xml", 400))
			before := e.stored()

			err := e.finisher("f", 0, e.r.Store).TryFinish(t.Context(), e.run)
			if err == nil || failure.ClassOf(err) != failure.ClassPermanent || !strings.Contains(err.Error(), culprit) {
				t.Fatalf("TryFinish: %v (class %s); want a permanent error naming %s", err, failure.ClassOf(err), culprit)
			}
			if _, ok := e.manifest(); ok {
				t.Error("a manifest was written")
			}
			if _, err := e.r.Store.Stat(t.Context(), e.key("_SUCCESS")); !errors.Is(err, objstore.ErrNotFound) {
				t.Errorf("_SUCCESS: %v", err)
			}
			if after := e.stored(); !maps.Equal(before, after) {
				t.Errorf("the prefix changed: before\n%v\nafter\n%v", before, after)
			}
			if _, err := e.r.Store.Stat(t.Context(), leftover.Key); err != nil {
				t.Errorf("the leftover was removed from a run that is not sealed: %v", err)
			}
			if rec, _ := e.r.Q.GetRun(t.Context(), e.run); rec.State == ledger.RunComplete {
				t.Error("the run was marked complete")
			}
		})
	}
}

// failSuccess fails the first Put of _SUCCESS: a finisher that dies between
// the manifest and _SUCCESS.
type failSuccess struct {
	*objstore.S3
	once sync.Once
}

func (s *failSuccess) Put(ctx context.Context, key string, r io.Reader, o objstore.PutOptions) (objstore.Object, error) {
	fail := false
	if strings.HasSuffix(key, "/_SUCCESS") {
		s.once.Do(func() { fail = true })
	}
	if fail {
		return objstore.Object{}, errors.New("injected: the finisher died")
	}
	return s.S3.Put(ctx, key, r, o)
}

// TestSealManifestThere: a manifest already in the run's prefix is adopted
// when it lists the run's objects (a finisher died after writing it), so
// that what _SUCCESS vouches for is what was written first; one listing
// other objects stops the seal (issue 16: never seal a prefix the
// manifest does not describe).
func TestSealManifestThere(t *testing.T) {
	t.Run("same objects: adopted", func(t *testing.T) {
		e := sealSetup(t)
		e.open(1, "pass-1", e.put("hostlist/page-000001.xml", 400))
		e.done("1", e.put("detections/batch-000001.xml", 100))
		if err := e.finisher("dies", time.Hour, &failSuccess{S3: e.r.Store}).TryFinish(t.Context(), e.run); err == nil {
			t.Fatal("the injected failure was not reported")
		}
		first, ok := e.manifest()
		before := e.stored()
		if !ok {
			t.Fatal("the first finisher wrote no manifest")
		}
		if err := e.finisher("next", time.Nanosecond, e.r.Store).TryFinish(t.Context(), e.run); err != nil {
			t.Fatal(err)
		}
		e.checkSealed()
		after := e.stored()
		if after["manifest.json"] != before["manifest.json"] {
			t.Fatalf("the manifest was rewritten: %s, was %s", after["manifest.json"], before["manifest.json"])
		}
		rec, _ := e.r.Q.GetRun(t.Context(), e.run)
		if rec.Totals == nil || *rec.Totals != first.Totals || rec.Finisher != "next" {
			t.Fatalf("record totals %+v by %s; the adopted manifest's are %+v", rec.Totals, rec.Finisher, first.Totals)
		}
	})
	t.Run("other objects: not sealed", func(t *testing.T) {
		e := sealSetup(t)
		e.open(1, "pass-1", e.put("hostlist/page-000001.xml", 400))
		o := e.put("detections/batch-000001.xml", 100)
		e.done("1", o)
		other := finish.Manifest{Run: e.run, Finisher: "someone",
			Batches: []finish.ManifestBatch{{Batch: "1", Objects: finish.Objects{{Key: o.Key, Bytes: o.Bytes, SHA256: strings.Repeat("0", 64)}}}}}
		body, _ := json.Marshal(other)
		if _, err := e.r.Store.Put(t.Context(), e.key("manifest.json"), strings.NewReader(string(body)), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		before := e.stored()

		err := e.finisher("f", 0, e.r.Store).TryFinish(t.Context(), e.run)
		if err == nil || failure.ClassOf(err) != failure.ClassPermanent || !strings.Contains(err.Error(), "lists other objects") {
			t.Fatalf("TryFinish: %v (class %s); want a permanent error", err, failure.ClassOf(err))
		}
		if after := e.stored(); !maps.Equal(before, after) {
			t.Fatalf("the prefix changed: before\n%v\nafter\n%v", before, after)
		}
		if rec, _ := e.r.Q.GetRun(t.Context(), e.run); rec.State == ledger.RunComplete {
			t.Fatal("the run was marked complete")
		}
	})
}

// freezer holds a finisher at one point (its first Delete, or the Put of
// the manifest) until released: a pod frozen or partitioned mid-way.
type freezer struct {
	*objstore.S3
	at       string // "delete" or "manifest"
	frozen   chan struct{}
	released chan struct{}
	once     sync.Once
}

func (s *freezer) hold(what string) {
	if what != s.at {
		return
	}
	s.once.Do(func() {
		close(s.frozen)
		<-s.released
	})
}

func (s *freezer) Delete(ctx context.Context, key string) error {
	s.hold("delete")
	return s.S3.Delete(ctx, key)
}

func (s *freezer) Put(ctx context.Context, key string, r io.Reader, o objstore.PutOptions) (objstore.Object, error) {
	if strings.HasSuffix(key, "/manifest.json") {
		s.hold("manifest")
	}
	return s.S3.Put(ctx, key, r, o)
}

// TestStaleFinisherChangesNothing: finisher A claims the run and freezes
// once it has worked out what to keep; its claim goes stale and B completes
// the run. When A wakes up it changes nothing under runs/<run>/: it removes
// the keys B removed (gone already), finds B's manifest listing the same
// objects, and _SUCCESS there.
func TestStaleFinisherChangesNothing(t *testing.T) {
	for _, at := range []string{"delete", "manifest"} {
		t.Run("frozen at "+at, func(t *testing.T) {
			e := sealSetup(t)
			e.put("detections/batch-000001.xml", 500) // the split parent's page
			e.put("detections/batch-000002-p0002.xml", 70)
			e.put("hostlist/page-000002.xml", 60)
			e.open(2, "pass-1", e.put("hostlist/page-000001.xml", 400))
			e.split("1")
			e.done("1.1", e.put("detections/batch-000001.1.xml", 300))
			e.done("1.2", e.put("detections/batch-000001.2.xml", 200))
			e.done("2", e.put("detections/batch-000002.xml", 100))

			a := &freezer{S3: e.r.Store, at: at, frozen: make(chan struct{}), released: make(chan struct{})}
			errA := make(chan error, 1)
			go func() { errA <- e.finisher("A", time.Hour, a).TryFinish(context.WithoutCancel(t.Context()), e.run) }()
			select {
			case <-a.frozen:
			case err := <-errA:
				t.Fatalf("A finished without freezing: %v", err)
			}
			if err := e.finisher("B", time.Nanosecond, e.r.Store).TryFinish(t.Context(), e.run); err != nil {
				t.Fatal(err)
			}
			e.checkSealed()
			sealed := e.stored()
			rec, _ := e.r.Q.GetRun(t.Context(), e.run)

			close(a.released)
			if err := <-errA; err != nil {
				t.Fatalf("A, woken up: %v", err)
			}
			if after := e.stored(); !maps.Equal(sealed, after) {
				t.Fatalf("A changed the sealed run: before\n%v\nafter\n%v", sealed, after)
			}
			after, _ := e.r.Q.GetRun(t.Context(), e.run)
			if after.Finisher != "B" || !after.Completed.Equal(rec.Completed) || after.State != ledger.RunComplete {
				t.Fatalf("record after A woke up: %+v; B completed it as %+v", after, rec)
			}
		})
	}
}

// TestSealAbortsUploadsLeftInTheRun: an upload under the run's detections/
// or hostlist/ that no record names (the service created it while its
// writer saw an error, or the writer died before recording it) is aborted
// when the run is sealed, so nothing can complete it later and the prefix
// holds no trace of it. Another run's upload is left alone.
func TestSealAbortsUploadsLeftInTheRun(t *testing.T) {
	e := sealSetup(t)
	ctx := t.Context()
	pages := []objstore.Object{e.put("hostlist/page-000001.xml", 400)}
	e.open(1, "pass-1", pages...)
	e.done("1", e.put("detections/batch-000001.xml", 100))
	var left []objstore.Upload
	for _, name := range []string{"detections/batch-000001-p0002.xml", "detections/batch-000002.xml", "hostlist/page-000002.xml"} {
		u, err := e.r.Store.Begin(ctx, e.key(name), objstore.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, u)
	}
	other, err := e.r.Store.Begin(ctx, objstore.DetectionKey(prefix, "20260111T000000Z-other", 1, 1), objstore.PutOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.finisher("f", 0, e.r.Store).TryFinish(ctx, e.run); err != nil {
		t.Fatal(err)
	}
	e.checkSealed()
	for _, u := range left {
		if _, err := e.r.Store.Complete(ctx, u, strings.NewReader("late")); !errors.Is(err, objstore.ErrUploadGone) {
			t.Errorf("Complete of %s after the seal = %v, want ErrUploadGone", u.Key, err)
		}
	}
	if _, err := e.r.Store.Complete(ctx, other, strings.NewReader("other run")); err != nil {
		t.Errorf("another run's upload: %v", err)
	}
	if _, ok := e.stored()["detections/batch-000002.xml"]; ok {
		t.Errorf("a late upload landed in the sealed run")
	}
}
