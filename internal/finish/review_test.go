package finish_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testrun"
)

// TestReviewHostListAfterUpgradeResume: a run whose planning spans the
// upgrade. The previous version stored Host List page 1 and recorded no page
// (it had no page records); the new planner resumed and recorded the pages
// from its resume point on. The manifest must still list every page the
// run's prefix holds (I8), as the listing manifest of 22af5ea did; the
// fallback to listing only triggers when the ledger has no page at all.
func TestReviewHostListAfterUpgradeResume(t *testing.T) {
	for _, tt := range []struct {
		name    string
		dropped []string // page records the old version never wrote
	}{
		{"planned wholly by the old version", []string{"1", "2"}},
		{"resumed by the new version", []string{"1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := testrun.New(t, testrun.Options{Hosts: 3000, Seed: 3, Sim: qualysim.Config{ConcurrencyLimit: qualysim.Off}})
			e := &env{t: t, r: r, sim: r.Sim, q: r.Q, store: &countingStore{S3: r.Store}}
			fin := e.finisher("w", 0)
			out := e.plan(fin)
			kv, err := r.JS.KeyValue(t.Context(), ledger.BucketRuns)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tt.dropped {
				if err := kv.Delete(t.Context(), out.Run+".page."+p); err != nil {
					t.Fatal(err)
				}
			}
			e.work(fin, func() bool { return e.run(out.Run).State == ledger.RunComplete })

			listed, stored := e.hostListPages(out.Run)
			slices.Sort(stored)
			if len(stored) != 2 || !slices.Equal(listed, stored) {
				t.Fatalf("manifest lists host list pages %q; the run's prefix holds %q", listed, stored)
			}
		})
	}
}

// dieAfterPut is a planner's store that stops its planner right after one
// Host List page is stored (its Put, or its upload's Complete, returns):
// the page is stored, its ledger record is not written (the pod died in
// between).
type dieAfterPut struct {
	*objstore.S3
	suffix string
	die    context.CancelFunc
}

func (s *dieAfterPut) Put(ctx context.Context, key string, r io.Reader, o objstore.PutOptions) (objstore.Object, error) {
	obj, err := s.S3.Put(ctx, key, r, o)
	if err == nil && strings.HasSuffix(key, s.suffix) {
		s.die()
	}
	return obj, err
}

func (s *dieAfterPut) Complete(ctx context.Context, u objstore.Upload, r io.Reader) (objstore.Object, error) {
	obj, err := s.S3.Complete(ctx, u, r)
	if err == nil && strings.HasSuffix(u.Key, s.suffix) {
		s.die()
	}
	return obj, err
}

// TestReviewHostListPageStoredNotRecorded: the planner dies between a Host
// List page's Put and its ledger record; before it is resumed, hosts are
// processed again and leave the run's window, so the resumed walk (from
// the start of its last recorded batch) ends before that page. The page
// stays in the run's prefix with no record. A run planned by a version
// that fences its planner passes (PlannerID) knows its final walk: the
// page is a leftover and the finisher removes it (issue 16). Before that,
// the manifest, built from the ledger, must still list it (I8), as the
// listing manifest of 22af5ea did. Either way the manifest lists exactly
// the pages the prefix holds.
func TestReviewHostListPageStoredNotRecorded(t *testing.T) {
	r := testrun.New(t, testrun.Options{Hosts: 1000, Seed: 3, Sim: qualysim.Config{ConcurrencyLimit: qualysim.Off}})
	e := &env{t: t, r: r, sim: r.Sim, q: r.Q, store: &countingStore{S3: r.Store}}
	fin := e.finisher("w", 0)
	cfg := plan.Config{BatchSize: 300, PageSize: 100, Now: func() time.Time { return e.sim.Clock().Now() }}

	ctx, die := context.WithCancel(t.Context())
	dying := &dieAfterPut{S3: r.Store, suffix: "/hostlist/page-000005.xml", die: die}
	dyingParts := r.Parts("planner")
	dyingParts.Store, dyingParts.Finish = dying, testrun.NoFinish
	out, err := dyingParts.Planner(cfg).Run(ctx)
	if err == nil {
		t.Fatal("the planner was to die after storing page 5")
	}
	pages, err := r.Q.Pages(t.Context(), out.Run)
	if err != nil || len(pages) != 4 {
		t.Fatalf("before the resume the ledger holds %d pages (%v); want 4, page 5 stored but not recorded", len(pages), err)
	}

	// Every host is processed again meanwhile: none is left in the window.
	e.sim.Advance(400 * 24 * time.Hour)
	again, err := e.parts("planner", fin).Planner(cfg).Run(t.Context())
	if err != nil || !again.Resumed || again.Run != out.Run {
		t.Fatalf("resume: %+v, %v", again, err)
	}
	e.work(fin, func() bool { return e.run(out.Run).State == ledger.RunComplete })

	listed, stored := e.hostListPages(out.Run)
	fenced := e.run(out.Run).PlannerID != ""
	if slices.Contains(stored, objstore.HostListPageKey(prefix, out.Run, 5)) == fenced || !slices.Equal(listed, stored) {
		t.Fatalf("manifest lists host list pages\n%q\nthe run's prefix holds\n%q\n(planner passes fenced: %v; then page 5 must be gone, else kept)", listed, stored, fenced)
	}
}

// hostListPages returns the Host List page keys run's manifest lists and
// those its prefix holds in the bucket, each in the order it gives them.
func (e *env) hostListPages(run string) (listed, stored []string) {
	e.t.Helper()
	for o, err := range e.r.Store.List(e.t.Context(), objstore.RunPrefix(prefix, run)+"hostlist/") {
		if err != nil {
			e.t.Fatal(err)
		}
		stored = append(stored, o.Key)
	}
	var m struct {
		HostList []struct {
			Key string `json:"key"`
		} `json:"hostlist"`
	}
	e.getJSON(objstore.ManifestKey(prefix, run), &m)
	for _, o := range m.HostList {
		listed = append(listed, o.Key)
	}
	return listed, stored
}
