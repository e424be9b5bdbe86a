package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/objstore"
)

// pageObj is page n of r1 as pass by stored it.
func pageObj(n int, by string) objstore.Object {
	return objstore.Object{Key: fmt.Sprintf("runs/r1/hostlist/page-%06d.xml", n), Hosts: n, SHA256: by}
}

// recordedBy returns whose copy of page n of r1 is recorded ("" if none).
func recordedBy(t *testing.T, e *env, n int) string {
	t.Helper()
	pages, err := e.l.Pages(e.Ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pages {
		if p.Key == pageObj(n, "").Key {
			return p.SHA256
		}
	}
	return ""
}

// TestBeginPage: BeginPage lists the page's upload in the run record and
// RecordPage records the page and unlists it; a pass that does not plan
// the run can do neither.
func TestBeginPage(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	newRun(t, e, "r1")
	if _, err := e.l.TakePlanning(e.Ctx, "r1", "A", "planner-a", noAbort(t)); err != nil {
		t.Fatal(err)
	}
	u := upload("hostlist/page-000001.xml")
	s, err := e.l.BeginPage(e.Ctx, "r1", "A", 1, u)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := e.l.GetRun(e.Ctx, "r1"); !slices.Equal(r.Uploads, []objstore.Upload{u}) {
		t.Fatalf("uploads after BeginPage: %+v", r.Uploads)
	}
	if err := e.l.RecordPage(e.Ctx, s, pageObj(1, "A")); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.l.GetRun(e.Ctx, "r1"); len(r.Uploads) != 0 {
		t.Fatalf("uploads after RecordPage: %+v", r.Uploads)
	}
	if by := recordedBy(t, e, 1); by != "A" {
		t.Fatalf("page 1 recorded by %q, want A", by)
	}
	if _, err := e.l.BeginPage(e.Ctx, "r1", "Z", 2, upload("hostlist/page-000002.xml")); !errors.Is(err, ErrNotPlanner) {
		t.Fatalf("BeginPage of a pass that does not plan the run: %v", err)
	}
	if r, _ := e.l.GetRun(e.Ctx, "r1"); len(r.Uploads) != 0 {
		t.Fatalf("a stranger's upload was listed: %+v", r.Uploads)
	}
	if _, err := e.l.BeginPage(e.Ctx, "r1", "A", 0, u); err == nil {
		t.Error("BeginPage of page 0 succeeded")
	}
	if err := e.l.RecordPage(e.Ctx, PageSlot{}, pageObj(1, "A")); err == nil {
		t.Error("RecordPage without a slot succeeded")
	}
}

// TestRecordPageFence: stale pass A began page 2, then pass B took the run
// over; whatever order the two passes' remaining steps run in, the page
// record left is B's, A's RecordPage fails with ErrNotPlanner, A's upload
// was aborted by the take, and no upload stays listed. Each order runs with
// and without an older record of the page (Create or Update).
func TestRecordPageFence(t *testing.T) {
	t.Parallel()
	orders := map[string][]string{
		"B records, then A":                {"A begin", "B take", "B begin", "B record", "A record"},
		"A records between B's steps":      {"A begin", "B take", "B begin", "A record", "B record"},
		"A records before B begins":        {"A begin", "B take", "A record", "B begin", "B record"},
		"A records before B takes":         {"A begin", "A record", "B take", "B begin", "B record"},
		"A records after B's walk is over": {"A begin", "B take", "B begin", "B record", "B final", "A record"},
	}
	for name, steps := range orders {
		for _, older := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/older record %v", name, older), func(t *testing.T) {
				t.Parallel()
				e := setup(t, Config{})
				newRun(t, e, "r1")
				if older {
					if err := e.l.MarkPage(e.Ctx, "r1", 2, pageObj(2, "older")); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := e.l.TakePlanning(e.Ctx, "r1", "A", "planner-a", noAbort(t)); err != nil {
					t.Fatal(err)
				}
				uA, uB := upload("hostlist/page-000002.xml"), objstore.Upload{Key: "runs/r1/hostlist/page-000002.xml", ID: "id-B"}
				var sA, sB PageSlot
				var ab aborts
				errA := errors.New("A never recorded")
				for _, step := range steps {
					var err error
					switch step {
					case "A begin":
						sA, err = e.l.BeginPage(e.Ctx, "r1", "A", 2, uA)
					case "A record":
						errA = e.l.RecordPage(e.Ctx, sA, pageObj(2, "A"))
					case "B take":
						_, err = e.l.TakePlanning(e.Ctx, "r1", "B", "planner-b", ab.abort)
					case "B begin":
						sB, err = e.l.BeginPage(e.Ctx, "r1", "B", 2, uB)
					case "B record":
						err = e.l.RecordPage(e.Ctx, sB, pageObj(2, "B"))
					case "B final":
						_, err = e.l.UpdatePlanned(e.Ctx, "r1", "B", func(r *RunRecord) error {
							r.State, r.PlanningComplete, r.HostListPages = RunFetching, true, 2
							return nil
						})
					}
					if err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				}
				if steps[1] == "A record" {
					// A recorded while it planned the run: its upload was
					// unlisted, and B had nothing to abort.
					if errA != nil || len(ab.list()) != 0 {
						t.Errorf("A's RecordPage before B's take: %v; B aborted %v", errA, ab.list())
					}
				} else {
					if !errors.Is(errA, ErrNotPlanner) {
						t.Errorf("A's RecordPage after B took the run: %v, want ErrNotPlanner", errA)
					}
					if got := ab.list(); !slices.Equal(got, []objstore.Upload{uA}) {
						t.Errorf("B's take aborted %v, want A's upload", got)
					}
				}
				if by := recordedBy(t, e, 2); by != "B" {
					t.Fatalf("page 2 recorded by %q, want B", by)
				}
				if r, _ := e.l.GetRun(e.Ctx, "r1"); len(r.Uploads) != 0 || r.PlannerID != "B" {
					t.Fatalf("run record: planner %q, uploads %+v", r.PlannerID, r.Uploads)
				}
			})
		}
	}
}

// hookedKV runs before(n) ahead of the nth Get of key.
type hookedKV struct {
	jetstream.KeyValue
	key    string
	gets   atomic.Int32
	before func(n int)
}

func (h *hookedKV) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	if key == h.key {
		h.before(int(h.gets.Add(1)))
	}
	return h.KeyValue.Get(ctx, key)
}

// TestPageFenceOrder: pass B takes the run over and records the page just
// before stale pass A reads the page's revision, in BeginPage or in a
// retry of RecordPage (its first compare-and-set found the record written
// meanwhile by an older version's MarkPage). Each read comes before A's
// check that it plans the run (BeginPage's registration, the retry's read
// of the run record), so that check sees B and A lands nothing; a check
// before the read would let A write over B's record with B's revision.
// Without a takeover, A's retry lands.
func TestPageFenceOrder(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		takeAt int32 // B acts before A's nth read of the page's revision; 0: never
		want   string
	}{
		{"retry while A plans", 0, "A"},
		{"taken over before BeginPage reads", 1, "B"},
		{"taken over before the retry reads", 2, "B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, Config{})
			newRun(t, e, "r1")
			if _, err := e.l.TakePlanning(e.Ctx, "r1", "A", "planner-a", noAbort(t)); err != nil {
				t.Fatal(err)
			}
			hook := &hookedKV{KeyValue: e.l.runs, key: "r1.page.2"}
			la := *e.l
			la.runs = hook
			hook.before = func(n int) {
				if int32(n) != tt.takeAt {
					return
				}
				var ab aborts
				if _, err := e.l.TakePlanning(e.Ctx, "r1", "B", "planner-b", ab.abort); err != nil {
					t.Error(err)
				}
				sB, err := e.l.BeginPage(e.Ctx, "r1", "B", 2, objstore.Upload{Key: "runs/r1/hostlist/page-000002.xml", ID: "id-B"})
				if err == nil {
					err = e.l.RecordPage(e.Ctx, sB, pageObj(2, "B"))
				}
				if err != nil {
					t.Error(err)
				}
			}
			sA, err := la.BeginPage(e.Ctx, "r1", "A", 2, upload("hostlist/page-000002.xml"))
			if err == nil {
				if err := e.l.MarkPage(e.Ctx, "r1", 2, pageObj(2, "older")); err != nil {
					t.Fatal(err)
				}
				err = la.RecordPage(e.Ctx, sA, pageObj(2, "A"))
				if tt.takeAt != 1 && hook.gets.Load() < 2 {
					t.Fatalf("A read the page's revision %d times: its compare-and-set never failed", hook.gets.Load())
				}
			}
			if tt.takeAt == 0 && err != nil {
				t.Fatal(err)
			}
			if tt.takeAt != 0 && !errors.Is(err, ErrNotPlanner) {
				t.Errorf("A after B took the run over: %v, want ErrNotPlanner", err)
			}
			if by := recordedBy(t, e, 2); by != tt.want {
				t.Fatalf("page 2 recorded by %q, want %s", by, tt.want)
			}
			if r, _ := e.l.GetRun(e.Ctx, "r1"); len(r.Uploads) != 0 {
				t.Fatalf("uploads left listed: %+v", r.Uploads)
			}
		})
	}
}

// TestPagesBeyondFinalWalk: once a fenced run's planning is complete,
// page records beyond its final walk's last page are left out; before
// that, and for runs of older versions, every record counts.
func TestPagesBeyondFinalWalk(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		plannerID string
		last      int // HostListPages
		noRecord  bool
		want      []int
	}{
		{"planning", "p", 0, false, []int{1, 2, 3, 4, 5}},
		{"planned to page 3", "p", 3, false, []int{1, 2, 3}},
		{"planned to page 5", "p", 5, false, []int{1, 2, 3, 4, 5}},
		{"older version's record", "", 3, false, []int{1, 2, 3, 4, 5}},
		{"no run record", "", 0, true, []int{1, 2, 3, 4, 5}},
	}
	e := setup(t, Config{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := fmt.Sprintf("r%d", i)
			for n := 1; n <= 5; n++ {
				if err := e.l.MarkPage(e.Ctx, run, n, objstore.Object{Key: fmt.Sprint(n), Hosts: n}); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.noRecord {
				if _, err := e.l.CreateRun(e.Ctx, RunRecord{ID: run, State: RunFetching, PlannerID: tt.plannerID,
					PlanningComplete: tt.last > 0, HostListPages: tt.last}); err != nil {
					t.Fatal(err)
				}
			}
			pages, err := e.l.Pages(e.Ctx, run)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, p := range pages {
				got = append(got, p.Hosts)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("pages %v, want %v", got, tt.want)
			}
		})
	}
}

// TestManyPagesLeaveRunRecordSmall: recording 5000 pages (a walk with a
// small page size; a run record listing them passed the server's 1 MB
// payload limit) leaves the run record as small as recording one did:
// every progress write would otherwise carry them all.
func TestManyPagesLeaveRunRecordSmall(t *testing.T) {
	t.Parallel()
	const pages = 5_000
	e := setup(t, Config{})
	newRun(t, e, "r1")
	if _, err := e.l.TakePlanning(e.Ctx, "r1", "A", "planner-a", noAbort(t)); err != nil {
		t.Fatal(err)
	}
	size := func() int {
		ent, err := e.l.runs.Get(e.Ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		return len(ent.Value())
	}
	record := func(n int) error {
		key := fmt.Sprintf("runs/r1/hostlist/page-%06d.xml", n)
		s, err := e.l.BeginPage(e.Ctx, "r1", "A", n, objstore.Upload{Key: key, ID: fmt.Sprint("u", n)})
		if err != nil {
			return err
		}
		return e.l.RecordPage(e.Ctx, s, objstore.Object{Key: key, Bytes: 1 << 20, SHA256: fmt.Sprintf("%064x", n), Hosts: 1000})
	}
	if err := record(1); err != nil {
		t.Fatal(err)
	}
	one := size()
	for n := 2; n <= pages; n++ {
		if err := record(n); err != nil {
			t.Fatal(err)
		}
	}
	// Updated, a timestamp, may be a few bytes shorter or longer.
	if got := size(); got > one+16 || got > 1024 {
		t.Fatalf("run record is %d bytes after %d pages, %d after one", got, pages, one)
	}
	got, err := e.l.Pages(e.Ctx, "r1")
	if err != nil || len(got) != pages || got[pages-1].Hosts != 1000 {
		t.Fatalf("Pages: %d pages, %v", len(got), err)
	}
}
