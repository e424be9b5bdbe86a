package finish_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
)

// TestSealDropsLegacyPagesBeyondTheFinalWalk: a run an older version began
// planning recorded Host List pages 1-4 under <run>.page.<n> and died
// mid-batch (its progress still on page 2). This version's pass takes the
// run over, resumes at page 2, and its walk ends at page 3 (hosts left the
// window): it records pages 2-3 over the older records and names page 3
// its last. The older record of page 4 is still there; the finisher must
// not keep the old walk's page 4 and list it, or the sealed hostlist/
// holds a page beyond the final walk, whose hosts overlap the re-cut page
// 3 (issue 16: "Host List pages left by a resumed planner").
func TestSealDropsLegacyPagesBeyondTheFinalWalk(t *testing.T) {
	e := sealSetup(t)
	page := func(n int) string {
		return strings.TrimPrefix(objstore.HostListPageKey(prefix, e.run, n), objstore.RunPrefix(prefix, e.run))
	}
	// The older version's walk: pages 1-4, each recorded the old way.
	for n := 1; n <= 4; n++ {
		o := e.put(page(n), 100+n)
		if err := e.r.Q.MarkPage(t.Context(), e.run, n, o); err != nil {
			t.Fatal(err)
		}
	}
	// This version's pass: pages 2 and 3 again, other bytes, recorded
	// over the older records; its walk ended at page 3.
	p2, p3 := e.put(page(2), 202), e.put(page(3), 203)
	e.open(1, "pass-b", objstore.Object{}, p2, p3)
	det := e.put("detections/batch-000001.xml", 50)
	e.done("1", det)
	if err := e.finisher("f", time.Hour, e.r.Store).TryFinish(t.Context(), e.run); err != nil {
		t.Fatal(err)
	}
	hostlist, _ := e.checkSealed()
	if want := []string{page(1), page(2), page(3)}; !slices.Equal(hostlist, want) {
		t.Fatalf("the sealed run lists host list pages %v, want the final walk's %v", hostlist, want)
	}
}
