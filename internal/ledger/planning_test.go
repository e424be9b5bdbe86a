package ledger

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/qfetch/qfetch/internal/objstore"
)

// TestTakePlanning: a pass resuming a run aborts the uploads of the pass
// before it, which can then write nothing; a later pass takes it again.
func TestTakePlanning(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	newRun(t, e, "r1")
	if _, err := e.l.TakePlanning(e.Ctx, "r1", "pass-1", "planner-a", noAbort(t)); err != nil {
		t.Fatal(err)
	}
	ups := []objstore.Upload{upload("hostlist/page-000001.xml"), upload("hostlist/page-000002.xml")}
	if _, err := e.l.UpdatePlanned(e.Ctx, "r1", "pass-1", func(r *RunRecord) error {
		r.Uploads = append(r.Uploads, ups...)
		r.Progress.Batches = 3
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	broken := aborts{fail: errors.New("store down")}
	if _, err := e.l.TakePlanning(e.Ctx, "r1", "pass-2", "planner-b", broken.abort); !errors.Is(err, broken.fail) {
		t.Fatalf("take with a failing abort: %v", err)
	}
	if r, _ := e.l.GetRun(e.Ctx, "r1"); r.PlannerID != "pass-1" || len(r.Uploads) != 2 {
		t.Fatalf("a failed abort let the take through: %+v", r)
	}
	var ab aborts
	r, err := e.l.TakePlanning(e.Ctx, "r1", "pass-2", "planner-b", ab.abort)
	if err != nil || !slices.Equal(ab.list(), ups) {
		t.Fatalf("TakePlanning: %v, aborted %v; want %v", err, ab.list(), ups)
	}
	if r.PlannerID != "pass-2" || r.Planner != "planner-b" || r.Uploads != nil || r.Progress.Batches != 3 {
		t.Errorf("record after the take: %+v", r)
	}

	before, _ := e.l.GetRun(e.Ctx, "r1")
	called := false
	_, err = e.l.UpdatePlanned(e.Ctx, "r1", "pass-1", func(r *RunRecord) error {
		called = true
		r.Progress.Batches = 99
		return nil
	})
	if !errors.Is(err, ErrNotPlanner) || called {
		t.Fatalf("the old pass's UpdatePlanned: %v, change called %v", err, called)
	}
	if after, _ := e.l.GetRun(e.Ctx, "r1"); after.Revision != before.Revision || after.Progress.Batches != 3 {
		t.Errorf("the old pass wrote: %+v", after)
	}
	// change's own error comes back as it is.
	mine := errors.New("mine")
	if _, err := e.l.UpdatePlanned(e.Ctx, "r1", "pass-2", func(*RunRecord) error { return mine }); err != mine {
		t.Errorf("UpdatePlanned with a failing change: %v", err)
	}
	if _, err := e.l.UpdatePlanned(e.Ctx, "r1", "pass-2", func(r *RunRecord) error {
		r.State = RunFetching
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.UpdatePlanned(e.Ctx, "r1", "pass-2", func(*RunRecord) error { return nil }); !errors.Is(err, ErrNotPlanner) {
		t.Errorf("UpdatePlanned of a fetching run: %v", err)
	}
	if _, err := e.l.TakePlanning(e.Ctx, "r1", "pass-3", "planner-c", noAbort(t)); !errors.Is(err, ErrNotPlanner) {
		t.Errorf("TakePlanning of a fetching run: %v", err)
	}
	if _, err := e.l.TakePlanning(e.Ctx, "nope", "pass-3", "planner-c", noAbort(t)); !errors.Is(err, ErrRunNotFound) {
		t.Errorf("TakePlanning of a missing run: %v", err)
	}
}

// TestUpdateRunCopiesSlices: a change function that edits the slices it
// was given in place cannot reach the record UpdateRun read (and returns
// when the change declines).
func TestUpdateRunCopiesSlices(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	newRun(t, e, "r1")
	if _, err := e.l.UpdateRun(e.Ctx, "r1", func(r *RunRecord) error {
		r.Uploads = []objstore.Upload{upload("u")}
		r.Pages = []objstore.Object{{Key: "p"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cur, err := e.l.UpdateRun(e.Ctx, "r1", func(r *RunRecord) error {
		r.Uploads[0].ID = "changed"
		r.Pages[0].Key = "changed"
		return ErrNoChange
	})
	if !errors.Is(err, ErrNoChange) || cur.Uploads[0].ID != "id-u" || cur.Pages[0].Key != "p" {
		t.Fatalf("record as read: %+v, %v", cur, err)
	}
}

// TestPagesFromRecord: pages come from the run record and the older page
// records, the run record winning per page number and its holes skipped.
func TestPagesFromRecord(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	newRun(t, e, "r1")
	page := func(n int, by string) objstore.Object {
		return objstore.Object{Key: fmt.Sprintf("runs/r1/hostlist/page-%06d.xml", n), Hosts: n, SHA256: by}
	}
	for _, n := range []int{1, 2, 5} {
		if err := e.l.MarkPage(e.Ctx, "r1", n, page(n, "legacy")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.l.UpdateRun(e.Ctx, "r1", func(r *RunRecord) error {
		r.Pages = []objstore.Object{page(1, "record"), {}, page(3, "record"), {}, {}, page(6, "record")}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	pages, err := e.l.Pages(e.Ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pages {
		got = append(got, fmt.Sprintf("%d:%s", p.Hosts, p.SHA256))
	}
	want := []string{"1:record", "2:legacy", "3:record", "5:legacy", "6:record"}
	if !slices.Equal(got, want) {
		t.Fatalf("pages %v, want %v", got, want)
	}
}
