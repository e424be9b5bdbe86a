package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/qualys"
)

// runContent is what a completed run holds, as read back from the bucket.
type runContent struct {
	Rec      ledger.RunRecord
	Manifest finish.Manifest
	Planned  []uint64       // host IDs of the Host List pages, ascending
	Counts   map[uint64]int // host ID -> DETECTION elements stored
}

// checkRun checks completed run id against the simulator's truth at at
// (zero: the simulator's clock now), host by host, and returns what it
// holds:
//
//   - the run record is complete; _SUCCESS and manifest.json exist and agree
//     with it;
//   - every object the manifest names exists with its size and SHA-256, and
//     every object under hostlist/ and detections/ is in the manifest;
//   - every object is well-formed (the qualys validator reads it to io.EOF);
//   - the Host List pages hold each host of the window exactly once;
//   - the detection objects hold each host with a matching detection exactly
//     once, with exactly the truth's count of DETECTION elements, and no
//     other host;
//   - every planned batch is stored, itself or as split halves, once;
//   - the manifest's totals add up.
func (w *world) checkRun(id string, at time.Time) runContent {
	t := w.t
	t.Helper()
	ctx := t.Context()
	rec := w.Run(id)
	if rec.State != ledger.RunComplete || !rec.PlanningComplete {
		t.Fatalf("run %s: state %s, planning complete %v; want complete", id, rec.State, rec.PlanningComplete)
	}
	if st, err := w.store.Stat(ctx, objstore.SuccessKey(prefix, id)); err != nil || st.Bytes != 0 {
		t.Errorf("run %s: _SUCCESS: %+v, %v", id, st, err)
	}
	var m finish.Manifest
	w.getJSON(objstore.ManifestKey(prefix, id), &m)
	if m.Run != id || !m.After.Equal(rec.After) || !m.Before.Equal(rec.Before) {
		t.Errorf("run %s: manifest names run %s [%s, %s); record [%s, %s)", id, m.Run, m.After, m.Before, rec.After, rec.Before)
	}
	if rec.ManifestKey != objstore.ManifestKey(prefix, id) {
		t.Errorf("run %s: record's manifest key %q", id, rec.ManifestKey)
	}

	listed := map[string]int64{}
	for o, err := range w.store.List(ctx, objstore.RunPrefix(prefix, id)) {
		if err != nil {
			t.Fatalf("run %s: listing: %v", id, err)
		}
		listed[o.Key] = o.Bytes
	}
	inManifest := map[string]bool{}
	// read fetches an object the manifest names and checks its size and hash.
	read := func(o objstore.Object) []byte {
		inManifest[o.Key] = true
		size, ok := listed[o.Key]
		if !ok {
			t.Errorf("run %s: manifest names %s, which does not exist", id, o.Key)
			return nil
		}
		if size != o.Bytes {
			t.Errorf("run %s: %s is %d bytes, the manifest says %d", id, o.Key, size, o.Bytes)
		}
		b := w.getObject(o.Key)
		if o.SHA256 != "" {
			sum := sha256.Sum256(b)
			if got := hex.EncodeToString(sum[:]); got != o.SHA256 {
				t.Errorf("run %s: %s has SHA-256 %s, the manifest says %s", id, o.Key, got, o.SHA256)
			}
		}
		return b
	}

	// The Host List pages: the window's hosts, each once.
	win := window{After: rec.After, Before: rec.Before, At: at}
	seenPlanned := map[uint64]string{}
	var planned []uint64
	for _, o := range m.HostList {
		b := read(o)
		if b == nil {
			continue
		}
		var ids []uint64
		v := qualys.NewValidator(bytes.NewReader(b), qualys.ValidatorConfig{Root: qualys.RootHostList,
			OnID: func(id uint64) { ids = append(ids, id) }})
		if _, err := io.Copy(io.Discard, v); err != nil {
			t.Errorf("run %s: %s is not a whole Host List page: %v", id, o.Key, err)
		}
		for _, h := range ids {
			if prev, dup := seenPlanned[h]; dup {
				t.Errorf("run %s: host %d is in Host List pages %s and %s", id, h, prev, o.Key)
			}
			seenPlanned[h] = o.Key
			planned = append(planned, h)
		}
	}
	slices.Sort(planned)
	truthHosts := w.sim.HostTruth(win)
	diffIDs(t, "run "+id+": Host List pages vs truth", planned, truthHosts)

	// The detection objects: each host once, with its count.
	counts := map[uint64]int{}
	where := map[uint64]string{}
	var requested, returned, objects int
	var totalBytes int64
	var keys []string
	for _, mb := range m.Batches {
		keys = append(keys, mb.Batch)
		requested += mb.HostsRequested
		returned += mb.HostsReturned
		batchHosts := 0
		lastPage := 0
		for _, o := range mb.Objects {
			lastPage = max(lastPage, pageOf(o.Key))
		}
		for _, o := range mb.Objects {
			objects++
			totalBytes += o.Bytes
			b := read(o)
			if b == nil {
				continue
			}
			hosts := w.detectionHosts(id, o.Key, b, pageOf(o.Key) < lastPage)
			if len(hosts) != o.Hosts {
				t.Errorf("run %s: %s holds %d hosts, the manifest says %d", id, o.Key, len(hosts), o.Hosts)
			}
			batchHosts += len(hosts)
			for _, h := range hosts {
				if prev, dup := where[h.id]; dup {
					t.Errorf("run %s: host %d is stored twice: in %s and %s (I3)", id, h.id, prev, o.Key)
				}
				where[h.id] = o.Key
				counts[h.id] = h.n
			}
		}
		if batchHosts != mb.HostsReturned {
			t.Errorf("run %s: batch %s objects hold %d hosts, hosts_returned %d", id, mb.Batch, batchHosts, mb.HostsReturned)
		}
	}
	checkBatchKeys(t, id, keys, rec.BatchesPlanned)
	for key := range listed {
		if (strings.Contains(key, "/detections/") || strings.Contains(key, "/hostlist/")) && !inManifest[key] {
			t.Errorf("run %s: %s is in the bucket but not in the manifest", id, key)
		}
	}
	truthCounts := w.sim.DetectionTruth(win)
	diffCounts(t, "run "+id, counts, truthCounts)

	tot := m.Totals
	if tot.Batches != len(m.Batches) || tot.Objects != objects || tot.Bytes != totalBytes ||
		tot.HostsRequested != requested || tot.HostsReturned != returned || tot.HostListPages != len(m.HostList) {
		t.Errorf("run %s: manifest totals %+v; the entries add up to %d batches, %d objects, %d bytes, %d requested, %d returned, %d pages",
			id, tot, len(m.Batches), objects, totalBytes, requested, returned, len(m.HostList))
	}
	if requested != len(truthHosts) || tot.HostsPlanned != len(truthHosts) || rec.HostsPlanned != len(truthHosts) {
		t.Errorf("run %s: %d hosts requested, %d planned (record %d); the window holds %d", id, requested, tot.HostsPlanned, rec.HostsPlanned, len(truthHosts))
	}
	if returned != len(truthCounts) {
		t.Errorf("run %s: %d hosts returned; %d hosts of the window have detections", id, returned, len(truthCounts))
	}
	if t.Failed() {
		t.FailNow()
	}
	return runContent{Rec: rec, Manifest: m, Planned: planned, Counts: counts}
}

// checkLatest checks that the watermark and latest.json point at run id,
// once the planner's watermark step (what the next planner pass does
// first) has run: workers seal runs but hold no right on the watermark.
func (w *world) checkLatest(id string) {
	t := w.t
	t.Helper()
	rec := w.Run(id)
	if _, err := (plan.Advancer{Ledger: w.Queue().Ledger, Store: w.store, Prefix: prefix, By: "e2e"}).Advance(t.Context()); err != nil {
		t.Errorf("the planner's watermark step: %v", err)
	}
	wm, err := w.Queue().Watermark(t.Context())
	if err != nil || !wm.Time.Equal(rec.Before) || wm.Run != id {
		t.Errorf("watermark %+v, %v; want %s from run %s", wm, err, rec.Before, id)
	}
	var l finish.Latest
	w.getJSON(objstore.LatestKey(prefix), &l)
	if l.Run != id || !l.Before.Equal(rec.Before) || l.Manifest != objstore.ManifestKey(prefix, id) || l.Success != objstore.SuccessKey(prefix, id) {
		t.Errorf("latest.json %+v; want run %s", l, id)
	}
}

// checkNoUploadsLeft fails the test if the bucket holds an incomplete
// multipart upload (I2: a failed upload is aborted, not left behind).
func (w *world) checkNoUploadsLeft() {
	t := w.t
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for u := range w.s3.Client.ListIncompleteUploads(ctx, w.s3.Bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("listing incomplete uploads: %v", u.Err)
		}
		t.Errorf("incomplete multipart upload left behind: %s (upload %s, started %s)", u.Key, u.UploadID, u.Initiated)
	}
}

// incompleteUploads counts the bucket's incomplete multipart uploads.
func (w *world) incompleteUploads() int {
	ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
	defer cancel()
	n := 0
	for u := range w.s3.Client.ListIncompleteUploads(ctx, w.s3.Bucket, "", true) {
		if u.Err == nil {
			n++
		}
	}
	return n
}

// checkIncomplete checks that run id did not complete: no _SUCCESS, no
// manifest, and the watermark and latest.json do not name it.
func (w *world) checkIncomplete(id string) {
	t := w.t
	t.Helper()
	ctx := t.Context()
	if r := w.Run(id); r.State == ledger.RunComplete || r.State == ledger.RunCompleting {
		t.Errorf("run %s is %s", id, r.State)
	}
	for _, key := range []string{objstore.SuccessKey(prefix, id), objstore.ManifestKey(prefix, id)} {
		if _, err := w.store.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("%s of an incomplete run: %v", key, err)
		}
	}
	if wm, err := w.Queue().Watermark(ctx); err == nil && wm.Run == id {
		t.Errorf("the watermark names incomplete run %s: %+v", id, wm)
	}
	if r, err := w.store.Get(ctx, objstore.LatestKey(prefix)); err == nil {
		var l finish.Latest
		_ = json.NewDecoder(r).Decode(&l)
		r.Close()
		if l.Run == id {
			t.Errorf("latest.json names incomplete run %s", id)
		}
	}
}

func (w *world) getObject(key string) []byte {
	w.t.Helper()
	r, err := w.store.Get(w.t.Context(), key)
	if err != nil {
		w.t.Fatalf("%s: %v", key, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		w.t.Fatalf("%s: %v", key, err)
	}
	return b
}

func (w *world) getJSON(key string, v any) {
	w.t.Helper()
	if err := json.Unmarshal(w.getObject(key), v); err != nil {
		w.t.Fatalf("%s: %v", key, err)
	}
}

type hostCount struct {
	id uint64
	n  int
}

// pageOf is the page number in a detection object's key: 2 for
// batch-000001-p0002.xml, 1 for a first page (no -pNNNN).
func pageOf(key string) int {
	name := strings.TrimSuffix(key[strings.LastIndex(key, "/")+1:], ".xml")
	i := strings.LastIndex(name, "-p")
	if i < 0 {
		return 1
	}
	digits := name[i+2:]
	if digits != "" && digits[0] >= 'a' && digits[0] <= 'z' { // past 9999: objstore's seq
		digits = digits[1:]
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return 1
	}
	return n
}

// detectionHosts checks that b is a whole detection document and returns
// its hosts with their DETECTION counts. more says that a later page of
// the same batch follows, so b must end with the truncation WARNING that
// asked for it; the last page must not.
func (w *world) detectionHosts(run, key string, b []byte, more bool) []hostCount {
	t := w.t
	t.Helper()
	var ids []uint64
	v := qualys.NewValidator(bytes.NewReader(b), qualys.ValidatorConfig{Root: qualys.RootDetections,
		OnID: func(id uint64) { ids = append(ids, id) }})
	if _, err := io.Copy(io.Discard, v); err != nil {
		t.Errorf("run %s: %s is not a whole detection document (I2): %v", run, key, err)
		return nil
	}
	hosts, err := countDetections(b)
	if err != nil {
		t.Errorf("run %s: %s: %v", run, key, err)
		return nil
	}
	total := 0
	for i, h := range hosts {
		total += h.n
		if i >= len(ids) || ids[i] != h.id {
			t.Errorf("run %s: %s: host %d is %d by the validator, %d by the count", run, key, i, at(ids, i), h.id)
			return nil
		}
	}
	if len(ids) != len(hosts) || v.Summary().Detections != total {
		t.Errorf("run %s: %s: validator saw %d hosts, %d detections; the count %d, %d", run, key, len(ids), v.Summary().Detections, len(hosts), total)
	}
	switch warn := v.Summary().Warning; {
	case warn != nil && !more:
		t.Errorf("run %s: %s is a truncated page (%+v) but the last of its batch: the batch's next page is missing", run, key, warn)
	case warn == nil && more:
		t.Errorf("run %s: %s is a whole answer, yet a later page of its batch is stored", run, key)
	}
	return hosts
}

func at(ids []uint64, i int) uint64 {
	if i < len(ids) {
		return ids[i]
	}
	return 0
}

// countDetections walks a Host List Detection document and returns, in
// document order, each HOST's ID and its number of DETECTION elements. It is
// deliberately independent of qfetch's own scanner: tags, CDATA, comments
// and declarations, nothing more.
func countDetections(doc []byte) ([]hostCount, error) {
	var out []hostCount
	var stack [][]byte // names of the open elements, slices of doc
	// under reports whether the open elements end with names.
	under := func(names ...string) bool {
		if len(stack) < len(names) {
			return false
		}
		for i, n := range names {
			if string(stack[len(stack)-len(names)+i]) != n {
				return false
			}
		}
		return true
	}
	for i := 0; ; {
		j := bytes.IndexByte(doc[i:], '<')
		if j < 0 {
			break
		}
		i += j
		rest := doc[i:]
		if rest[1] == '!' || rest[1] == '?' {
			end := ">"
			switch {
			case bytes.HasPrefix(rest, []byte("<![CDATA[")):
				end = "]]>"
			case bytes.HasPrefix(rest, []byte("<!--")):
				end = "-->"
			case rest[1] == '?':
				end = "?>"
			}
			k := bytes.Index(rest, []byte(end))
			if k < 0 {
				return nil, fmt.Errorf("unterminated markup at byte %d", i)
			}
			i += k + len(end)
			continue
		}
		k := bytes.IndexByte(rest, '>')
		if k < 0 {
			return nil, fmt.Errorf("unterminated tag at byte %d", i)
		}
		tag := rest[1:k]
		i += k + 1
		if tag[0] == '/' {
			name := bytes.TrimSpace(tag[1:])
			if len(stack) == 0 || !bytes.Equal(stack[len(stack)-1], name) {
				return nil, fmt.Errorf("</%s> does not close the open element at byte %d", name, i)
			}
			stack = stack[:len(stack)-1]
			continue
		}
		self := tag[len(tag)-1] == '/'
		if self {
			tag = tag[:len(tag)-1]
		}
		name := tag
		if sp := bytes.IndexAny(tag, " \t\r\n"); sp >= 0 {
			name = tag[:sp]
		}
		switch string(name) {
		case "HOST":
			if under("RESPONSE", "HOST_LIST") {
				out = append(out, hostCount{})
			}
		case "ID":
			if under("HOST_LIST", "HOST") && !self {
				end := bytes.IndexByte(doc[i:], '<')
				if end < 0 {
					return nil, fmt.Errorf("unterminated ID at byte %d", i)
				}
				id, err := strconv.ParseUint(string(bytes.TrimSpace(doc[i:i+end])), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("host ID at byte %d: %w", i, err)
				}
				out[len(out)-1].id = id
			}
		case "DETECTION":
			if under("HOST", "DETECTION_LIST") {
				out[len(out)-1].n++
			}
		}
		if !self {
			stack = append(stack, name)
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("document ends inside %s", stack[len(stack)-1])
	}
	return out, nil
}

// checkBatchKeys checks that the stored batch keys stand for batches
// 1..planned exactly once: each planned batch by itself or by the two halves
// of its split, recursively (17 or 17.1+17.2 or 17.1+17.2.1+17.2.2 ...).
func checkBatchKeys(t testing.TB, run string, keys []string, planned int) {
	t.Helper()
	have := map[string]bool{}
	for _, k := range keys {
		if have[k] {
			t.Errorf("run %s: batch %s is in the manifest twice", run, k)
		}
		have[k] = true
	}
	used := map[string]bool{}
	var covered func(k string, depth int) bool
	covered = func(k string, depth int) bool {
		if have[k] {
			used[k] = true
			return true
		}
		return depth < 32 && covered(k+".1", depth+1) && covered(k+".2", depth+1)
	}
	for i := 1; i <= planned; i++ {
		if !covered(strconv.Itoa(i), 0) {
			t.Errorf("run %s: batch %d is neither stored nor covered by its halves", run, i)
		}
	}
	for k := range have {
		if !used[k] {
			t.Errorf("run %s: batch %s in the manifest stands for no planned batch, or duplicates one", run, k)
		}
	}
}

// diffIDs reports how got and want (both ascending) differ.
func diffIDs(t testing.TB, what string, got, want []uint64) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	g, wnt := map[uint64]int{}, map[uint64]bool{}
	for _, id := range got {
		g[id]++
	}
	for _, id := range want {
		wnt[id] = true
	}
	var missing, extra, twice []uint64
	for id := range wnt {
		if g[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range g {
		if !wnt[id] {
			extra = append(extra, id)
		}
		if n > 1 {
			twice = append(twice, id)
		}
	}
	t.Errorf("%s: %d hosts, want %d; missing %d %v, extra %d %v, twice %d %v", what, len(got), len(want),
		len(missing), first(missing), len(extra), first(extra), len(twice), first(twice))
}

// diffCounts reports hosts whose stored DETECTION count is not the truth's.
func diffCounts(t testing.TB, what string, got, want map[uint64]int) {
	t.Helper()
	var missing, extra, wrong []string
	for id, n := range want {
		g, ok := got[id]
		switch {
		case !ok:
			missing = append(missing, strconv.FormatUint(id, 10))
		case g != n:
			wrong = append(wrong, fmt.Sprintf("%d: %d, want %d", id, g, n))
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, strconv.FormatUint(id, 10))
		}
	}
	if len(missing)+len(extra)+len(wrong) > 0 {
		t.Errorf("%s: detections vs truth: %d hosts missing %v, %d not in the truth %v, %d with a wrong count %v",
			what, len(missing), firstS(missing), len(extra), firstS(extra), len(wrong), firstS(wrong))
	}
}

func first(ids []uint64) []uint64 {
	slices.Sort(ids)
	return ids[:min(len(ids), 5)]
}

func firstS(s []string) []string {
	slices.Sort(s)
	return s[:min(len(s), 5)]
}
