package e2e

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/tables"
	"github.com/qfetch/qfetch/internal/testenv"
)

// kbPassIDs lists the KnowledgeBase passes, oldest first.
func (w *world) kbPassIDs() []string {
	w.t.Helper()
	ids, err := w.Queue().KBPassIDs(w.t.Context())
	if err != nil {
		w.t.Fatalf("KB pass IDs: %v", err)
	}
	return ids
}

// planBoth runs one planner pass to its end and returns the run it opened
// or resumed and the KnowledgeBase pass it opened ("" for none).
func (w *world) planBoth() (run, pass string) {
	w.t.Helper()
	before := w.kbPassIDs()
	run = w.plan()
	for _, id := range w.kbPassIDs() {
		if !slices.Contains(before, id) {
			if pass != "" {
				w.t.Fatalf("one planner pass opened KB passes %s and %s", pass, id)
			}
			pass = id
		}
	}
	return run, pass
}

// kbTruth is /__sim/truth?kind=kb.
type kbTruth struct {
	Count int                  `json:"count"`
	QIDs  []int                `json:"qids"`
	Vulns []qualysim.KBVuln    `json:"vulns"`
	Late  []qualysim.KBLateQID `json:"late"`
}

// KB asks the simulator's KnowledgeBase truth with q (KnowledgeBase
// parameters, and rows=1, late_after=, at=).
func (s *simProc) KB(q url.Values) kbTruth {
	s.t.Helper()
	q = cloneQ(q)
	q.Set("kind", "kb")
	var out kbTruth
	// Thousands of rows are generated for the answer: on a loaded machine
	// that outlasts the control plane's usual minute.
	slow := *s
	slow.http = &http.Client{Timeout: 5 * time.Minute}
	slow.do(http.MethodGet, "/__sim/truth?"+q.Encode(), nil, &out)
	if len(out.QIDs) != out.Count {
		s.t.Fatalf("sim KB truth: %d QIDs, count %d", len(out.QIDs), out.Count)
	}
	return out
}

func cloneQ(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// kbRows asks for the truth's rows at at with details=Basic: the fields
// the test compares (title, severity, CVEs, CVSS base scores) are the same
// as with qfetch's details=All, at a fraction of the work.
func kbRows(at time.Time) url.Values {
	return url.Values{"details": {"Basic"}, "rows": {"1"}, "at": {at.UTC().Format(time.RFC3339)}}
}

// kbChanged is the QIDs a last_modified_after=after listing returns at at.
func (s *simProc) kbChanged(after, at time.Time) []int {
	s.t.Helper()
	q := url.Values{"at": {at.UTC().Format(time.RFC3339)}}
	if !after.IsZero() {
		q.Set("last_modified_after", qualys.FormatTime(after))
	}
	return s.KB(q).QIDs
}

// kbVuln is what the test reads of a stored VULN.
type kbVuln struct {
	QID      int      `xml:"QID"`
	Title    string   `xml:"TITLE"`
	Severity int      `xml:"SEVERITY_LEVEL"`
	CVEs     []string `xml:"CVE_LIST>CVE>ID"`
	CVSS     string   `xml:"CVSS>BASE"`
	CVSS3    string   `xml:"CVSS_V3>BASE"`
}

// kbObjects parses every VULN of pass's stored KnowledgeBase answers
// (kb/<pass>/vulns/), and returns them by QID with their total bytes.
func (w *world) kbObjects(pass string) (map[int]kbVuln, int64) {
	t := w.t
	t.Helper()
	dir := objstore.RunPrefix(prefix, pass) + "vulns/"
	out := map[int]kbVuln{}
	var total int64
	for o, err := range w.store.List(t.Context(), dir) {
		if err != nil {
			t.Fatalf("listing %s: %v", dir, err)
		}
		b := w.getObject(o.Key)
		total += int64(len(b))
		var doc struct {
			Vulns []kbVuln `xml:"RESPONSE>VULN_LIST>VULN"`
		}
		d := xml.NewDecoder(bytes.NewReader(b))
		d.Strict = true
		if err := d.Decode(&doc); err != nil {
			t.Fatalf("%s: %v", o.Key, err)
		}
		for _, v := range doc.Vulns {
			if _, dup := out[v.QID]; dup {
				t.Errorf("%s: QID %d stored twice in pass %s", o.Key, v.QID, pass)
			}
			out[v.QID] = v
		}
	}
	return out, total
}

// checkKBContent holds the VULNs pass stored to the simulator's truth
// rows: the same QIDs, and per QID the title, severity, CVE IDs and CVSS
// base scores.
func (w *world) checkKBContent(pass string, got map[int]kbVuln, truth []qualysim.KBVuln) {
	t := w.t
	t.Helper()
	if len(got) != len(truth) {
		t.Errorf("pass %s stored %d VULNs, the simulator's truth has %d", pass, len(got), len(truth))
	}
	bad := 0
	for _, want := range truth {
		g, ok := got[want.QID]
		var w3, w2 string
		if want.CVSS != nil {
			w2 = want.CVSS.Base
		}
		if want.CVSS3 != nil {
			w3 = want.CVSS3.Base
		}
		cves := want.CVEIDs()
		switch {
		case !ok:
			t.Errorf("pass %s: QID %d of the truth not stored", pass, want.QID)
		case g.Title != want.Title || g.Severity != want.Severity || !slices.Equal(g.CVEs, cves) || g.CVSS != w2 || g.CVSS3 != w3:
			t.Errorf("pass %s: QID %d stored %+v; truth title %q severity %d CVEs %v CVSS %q CVSS3 %q",
				pass, want.QID, g, want.Title, want.Severity, cves, w2, w3)
		default:
			continue
		}
		if bad++; bad > 5 {
			t.Fatalf("pass %s: more QIDs differ; stopping", pass)
		}
	}
}

// kbManifest reads pass's manifest and its known QIDs.
func (w *world) kbManifest(pass string) (finish.Manifest, map[uint64]bool) {
	w.t.Helper()
	var m finish.Manifest
	w.getJSON(objstore.ManifestKey(prefix, pass), &m)
	if m.Kind != finish.KindKB {
		w.t.Errorf("manifest of %s: kind %q, want %q", pass, m.Kind, finish.KindKB)
	}
	known, err := hostids.Parse(m.KnownQIDs)
	if err != nil {
		w.t.Fatalf("manifest of %s: known_qids: %v", pass, err)
	}
	return m, set(known.IDs())
}

// kbTableQIDs waits for pass's kb table parts and returns their QIDs,
// read from the Parquet files.
func (w *world) kbTableQIDs(pass string, want int) map[int]bool {
	t := w.t
	t.Helper()
	dir := prefix + "/tables/" + tables.KB + "/"
	var got map[int]bool
	testenv.Eventually(t, 2*time.Minute, func() bool {
		got = map[int]bool{}
		for o, err := range w.store.List(t.Context(), dir) {
			if err != nil {
				return false
			}
			if !strings.Contains(o.Key, "/run="+pass+"/") || !strings.HasSuffix(o.Key, ".parquet") {
				continue
			}
			b := w.getObject(o.Key)
			f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatalf("%s: %v", o.Key, err)
			}
			r := parquet.NewGenericReader[tables.KBRow](f)
			rows := make([]tables.KBRow, 256)
			for {
				n, err := r.Read(rows)
				for _, row := range rows[:n] {
					got[int(row.QID)] = true
				}
				if err != nil {
					break
				}
			}
			r.Close()
		}
		return len(got) >= want
	}, "kb table parts of %s holding %d QIDs", pass, want)
	return got
}

// usedQIDs waits for the runs' detections tables and returns the QIDs
// their detections use.
func (w *world) usedQIDs(runs ...string) []uint64 {
	t := w.t
	t.Helper()
	var used hostids.Set
	testenv.EventuallyOK(t, 2*time.Minute, func() error {
		u, pending, err := tables.UsedQIDs(t.Context(), w.store, prefix, runs)
		if err != nil {
			return err
		}
		if len(pending) > 0 {
			return fmt.Errorf("tables of %v pending", pending)
		}
		used = u
		return nil
	}, "detections tables of %v", runs)
	return used.IDs()
}

// kbLatest checks that kb/latest.json names pass.
func (w *world) checkKBLatest(pass string) {
	w.t.Helper()
	var l finish.Latest
	w.getJSON(objstore.KBLatestKey(prefix), &l)
	if l.Run != pass || l.Manifest != objstore.ManifestKey(prefix, pass) {
		w.t.Errorf("kb/latest.json %+v; want pass %s", l, pass)
	}
}

// 15. The KnowledgeBase: a full pass beside run 1 holds what the
// simulator's KB holds; after the simulated clock moved 30 h, incremental
// passes fetch only the changed QIDs plus the backfill (counted at the
// simulator), the backfill brings the QIDs that hosts added since bring
// (late-visible: backdated, so no last_modified_after listing has them),
// and in the end every QID the detections use is known, in the kb table.
//
// The planner's clock is the wall clock, so the simulator starts 30 h in
// the past and is set to the wall clock's now for runs 2 and 3; --span 20s
// re-processes every host every 20 s and QFETCH_PLAN_OVERLAP=1h makes every
// run's window hold all of them (as in 8_daily_runs). Run 2's detections
// are complete only after the planner pass that opened it, so the backfill
// of their QIDs is the third pass's.
func testKnowledgeBase(t *testing.T, b bins) {
	start := time.Now().Add(-30 * time.Hour).UTC().Truncate(time.Second)
	sim := startSim(t, b, append(dataset(sized(400, 300), 15), "--concurrency-limit", "0", "--span", "20s",
		"--start", start.Format(time.RFC3339), "--new-hosts-per-day", "80", "--kb-qids", "3000")...)
	w := newWorld(t, b, sim, sharedBucket(t))
	w.KB = true
	w.BatchSize, w.PageSize = 100, 200
	w.Extra = map[string]string{"QFETCH_KB_EVERY": "0", "QFETCH_KB_BATCH_SIZE": "500", "QFETCH_PLAN_OVERLAP": "1h"}
	for i := range 3 {
		w.worker(fmt.Sprintf("worker-%d", i+1), 2, "")
	}
	vulns := func() int64 { return sim.Stats().Endpoints[qualysim.KB].VULNs }

	// (a) Run 1 and the full pass, at the simulator's start.
	s1 := sim.Clock()
	began := time.Now()
	r1, kb1 := w.planBoth()
	if kb1 == "" {
		t.Fatal("the first planner pass opened no KnowledgeBase pass")
	}
	w.waitComplete(r1, 3*time.Minute)
	rec1 := w.waitComplete(kb1, 4*time.Minute)
	t.Logf("full pass %s complete %v after the planner started", kb1, time.Since(began).Round(time.Millisecond))
	if !rec1.After.IsZero() {
		t.Errorf("first pass %s is incremental (after %s), want full", kb1, rec1.After)
	}
	truth1 := sim.KB(kbRows(s1))
	got1, bytes1 := w.kbObjects(kb1)
	w.checkKBContent(kb1, got1, truth1.Vulns)
	if n, again := vulns(), w.servedAgain(kb1); n < int64(len(truth1.Vulns)) || n > int64(len(truth1.Vulns))+again {
		t.Errorf("the simulator served %d VULNs for the full pass, want its %d (+ at most %d for batches delivered again)",
			n, len(truth1.Vulns), again)
	}
	_, known1 := w.kbManifest(kb1)
	for _, q := range truth1.QIDs {
		if !known1[uint64(q)] {
			t.Errorf("manifest of %s: known_qids leaves out QID %d", kb1, q)
			break
		}
	}
	w.checkKBLatest(kb1)
	table1 := w.kbTableQIDs(kb1, len(truth1.QIDs))
	if len(table1) != len(truth1.QIDs) {
		t.Errorf("kb table of %s: %d QIDs, want %d", kb1, len(table1), len(truth1.QIDs))
	}
	for _, q := range truth1.QIDs {
		if !table1[q] {
			t.Errorf("kb table of %s: QID %d missing", kb1, q)
			break
		}
	}
	used1 := w.usedQIDs(r1)
	for _, q := range used1 {
		if !table1[int(q)] {
			t.Errorf("run %s's detections use QID %d, not in the kb table of %s", r1, q, kb1)
		}
	}
	t.Logf("full pass %s: %d QIDs, %d bytes of KnowledgeBase answers; run %s uses %d QIDs", kb1, len(got1), bytes1, r1, len(used1))

	// (b) A day and more later: run 2 and an incremental pass.
	s2 := sim.SetClock(time.Now())
	if s2.Sub(s1) < 24*time.Hour {
		t.Fatalf("the simulated clock moved %v, want a day or more", s2.Sub(s1))
	}
	// passVULNs checks that the simulator served exactly the changed QIDs
	// and the backfill for an incremental pass, and returns its backfill.
	passVULNs := func(pass string, rec ledger.RunRecord, before int64) []uint64 {
		t.Helper()
		if rec.After.IsZero() {
			t.Fatalf("pass %s is full, want incremental", pass)
		}
		backfill, err := hostids.Parse(rec.Backfill)
		if err != nil {
			t.Fatalf("pass %s backfill: %v", pass, err)
		}
		want := set(nil)
		for _, q := range sim.kbChanged(rec.After, s2) {
			want[uint64(q)] = true
		}
		changed := len(want)
		for _, q := range backfill.IDs() {
			want[q] = true
		}
		served := vulns() - before
		got, n := w.kbObjects(pass)
		t.Logf("incremental pass %s after %s: %d changed + %d backfilled QIDs, %d VULNs served, %d stored (%d bytes)",
			pass, rec.After.Format(time.RFC3339), changed, backfill.Len(), served, len(got), n)
		again := w.servedAgain(pass)
		if served < int64(len(want)) || served > int64(len(want))+again || len(got) != len(want) {
			t.Errorf("pass %s: the simulator served %d VULNs and %d were stored, want exactly %d (%d changed after %s, %d backfilled; + at most %d served for batches delivered again)",
				pass, served, len(got), len(want), changed, rec.After, backfill.Len(), again)
		}
		for q := range got {
			if !want[uint64(q)] {
				t.Errorf("pass %s stored QID %d, neither changed nor backfilled", pass, q)
				break
			}
		}
		return backfill.IDs()
	}
	kbMark := func() ledger.Watermark {
		t.Helper()
		wm, err := w.Queue().KBWatermark(t.Context())
		if err != nil {
			t.Fatalf("KB watermark: %v", err)
		}
		return wm
	}

	v := vulns()
	r2, kb2 := w.planBoth()
	if kb2 == "" {
		t.Fatal("the second planner pass opened no KnowledgeBase pass")
	}
	if wm := kbMark(); !wm.Time.Equal(rec1.Before) || wm.Run != kb1 {
		t.Errorf("KB watermark after the second planner pass: %+v, want %s from %s", wm, rec1.Before, kb1)
	}
	w.waitComplete(r2, 3*time.Minute)
	rec2 := w.waitComplete(kb2, 3*time.Minute)
	backfill2 := passVULNs(kb2, rec2, v)
	if rec2.After.After(rec1.Before) {
		t.Errorf("pass %s starts at %s, after the watermark %s: a gap", kb2, rec2.After, rec1.Before)
	}
	w.checkKBLatest(kb2)

	// Once run 2's detections table is complete (the pass looks only at
	// runs whose tables are), the third pass backfills its QIDs that no
	// listing returns.
	used2 := w.usedQIDs(r2)
	v = vulns()
	r3, kb3 := w.planBoth()
	if kb3 == "" {
		t.Fatal("the third planner pass opened no KnowledgeBase pass")
	}
	if wm := kbMark(); !wm.Time.Equal(rec2.Before) || wm.Run != kb2 {
		t.Errorf("KB watermark after the third planner pass: %+v, want %s from %s", wm, rec2.Before, kb2)
	}
	w.waitComplete(r3, 3*time.Minute)
	rec3 := w.waitComplete(kb3, 3*time.Minute)
	backfill3 := passVULNs(kb3, rec3, v)
	w.checkKBLatest(kb3)

	// The QIDs no incremental listing returns: visible at s2, not at s1,
	// modified before the passes' last_modified_after. Those detections
	// use must be backfilled, and the simulator's own account of them
	// (KBLate) must agree.
	truth2 := sim.KB(url.Values{"at": {s2.Format(time.RFC3339)}, "late_after": {s1.Format(time.RFC3339)}})
	had := set(nil)
	for _, q := range truth1.QIDs {
		had[uint64(q)] = true
	}
	listed := set(nil)
	for _, q := range sim.kbChanged(rec2.After, s2) {
		listed[uint64(q)] = true
	}
	used := w.usedQIDs(r1, r2, r3)
	backfilled := set(append(backfill2, backfill3...))
	var late []uint64
	for _, q := range truth2.QIDs {
		if qq := uint64(q); !had[qq] && !listed[qq] && slices.Contains(used, qq) {
			late = append(late, qq)
			if !backfilled[qq] {
				t.Errorf("QID %d: late-visible, used by the detections, not backfilled", q)
			}
		}
	}
	for _, l := range truth2.Late {
		if l.Detected && slices.Contains(used, uint64(l.QID)) && !backfilled[uint64(l.QID)] {
			t.Errorf("KBLate QID %d (visible %s, modified %s) used by the detections, not backfilled", l.QID, l.Visible, l.LastModified)
		}
	}
	if len(late) == 0 {
		t.Errorf("no late-visible QID used by the detections; the backfill check proves nothing")
	}

	// No QID missing: every QID the detections use is known and in the
	// kb table.
	_, known3 := w.kbManifest(kb3)
	table := map[int]bool{}
	for _, p := range []string{kb1, kb2, kb3} {
		stored, _ := w.kbObjects(p)
		for q := range w.kbTableQIDs(p, len(stored)) {
			table[q] = true
		}
	}
	for _, q := range used {
		if !known3[q] || !table[int(q)] {
			t.Errorf("QID %d used by the detections: known %v, in the kb table %v", q, known3[q], table[int(q)])
		}
	}
	t.Logf("run %s uses %d QIDs; runs %s %s %s %d; %d late-visible, backfilled %d + %d; KB at s2: %d QIDs (%d late since s1)",
		r2, len(used2), r1, r2, r3, len(used), len(late), len(backfill2), len(backfill3), truth2.Count, len(truth2.Late))
	w.noDeadLetters()
	w.checkNoUploadsLeft()
}

// set is a set of IDs.
func set(ids []uint64) map[uint64]bool {
	m := make(map[uint64]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}

// servedAgain bounds the VULNs the simulator may have served beyond a
// pass's QIDs: a batch delivered more than once (a redelivery on a loaded
// machine) may have been answered whole before the delivery was given up,
// once per earlier delivery. With every batch delivered once it is 0, and
// the counts must be exact.
func (w *world) servedAgain(pass string) int64 {
	w.t.Helper()
	done, err := w.Queue().DoneBatches(w.t.Context(), pass)
	if err != nil {
		w.t.Fatalf("done batches of %s: %v", pass, err)
	}
	var n int64
	for _, d := range done {
		if d.Delivery > 1 {
			n += int64(d.Delivery-1) * int64(d.HostsReturned)
		}
	}
	return n
}
