package finish_test

import (
	"slices"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
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
			r := testrun.New(t, testrun.Options{Hosts: 3000, Seed: 3, ConcurrencyLimit: qualysim.Off})
			e := &env{t: t, sim: r.Sim, client: r.Client, q: r.Q, store: &countingStore{S3: r.Store}, log: r.Log}
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

			var stored []string
			for o, err := range r.Store.List(t.Context(), objstore.RunPrefix(prefix, out.Run)+"hostlist/") {
				if err != nil {
					t.Fatal(err)
				}
				stored = append(stored, o.Key)
			}
			var m struct {
				HostList []struct {
					Key string `json:"key"`
				} `json:"hostlist"`
			}
			e.getJSON(objstore.ManifestKey(prefix, out.Run), &m)
			var listed []string
			for _, o := range m.HostList {
				listed = append(listed, o.Key)
			}
			slices.Sort(stored)
			if len(stored) != 2 || !slices.Equal(listed, stored) {
				t.Fatalf("manifest lists host list pages %q; the run's prefix holds %q", listed, stored)
			}
		})
	}
}
