package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// The scenarios about sealed runs (issue 16, design.md I8): after _SUCCESS
// nothing under runs/<run>/ changes, and the prefix holds exactly the
// manifest's objects.

// 13. A worker frozen with SIGSTOP while its detection body streams into
// its open upload, left frozen until other workers have taken its batch
// over and sealed the run, then thawed. The thawed copy must land nothing:
// its upload was aborted by the copy that took the batch over, and its
// claim is no longer its own. Every object of the run is as it was at the
// seal, the prefix is exactly the manifest, and no upload is left open.
func testFrozenMidUpload(t *testing.T, b bins) {
	const ackWait = 5 * time.Second // the least config.Worker allows is 4 s
	// worker-a's call streams at 40 KB/s: about 30 s of body for a batch
	// of 500 hosts, far longer than the freeze needs to start.
	sim := startSim(t, b, append(dataset(sized(3000, 2000), 13), "--concurrency-limit", "0", "--bandwidth", "40000")...)
	w := newWorld(t, b, sim, sharedBucket(t))
	w.BatchSize = 500
	w.Extra = map[string]string{"QFETCH_WORKER_ACK_WAIT": ackWait.String()}
	id := w.plan()
	detections := objstore.RunPrefix(prefix, id) + "detections/"

	sim.Force(qualysim.Detection, qualysim.FaultBandwidth, 1)
	a := w.worker("worker-a", 1, "")
	var frozenKey string
	waitFor(t, time.Minute, 100*time.Millisecond, func() bool {
		keys := w.uploadsUnder(detections)
		calls, _ := a.Metric("qfetch_worker_calls_in_flight")
		if len(keys) != 1 || calls != 1 || sim.Detection().Bytes < 64<<10 {
			return false
		}
		frozenKey = keys[0]
		return true
	}, "worker-a streaming a body into its open upload")
	if err := a.freeze(); err != nil {
		if errors.Is(err, errors.ErrUnsupported) {
			t.Skip("freezing a process needs SIGSTOP")
		}
		t.Fatal(err)
	}
	// Registered after the process's own cleanup, so it runs first: a
	// frozen process cannot act on the SIGTERM that stops it.
	t.Cleanup(func() {
		if !a.Exited() { // a reaped PID may be someone else's
			_ = a.thaw()
		}
	})
	frozen := time.Now()
	t.Logf("worker-a frozen mid-upload of %s", frozenKey)

	bw, cw := w.worker("worker-b", 2, ""), w.worker("worker-c", 2, "")
	w.waitComplete(id, 2*time.Minute)
	t.Logf("run sealed %v after the freeze", time.Since(frozen).Round(100*time.Millisecond))
	sealed := w.snapshotRun(id)

	if err := a.thaw(); err != nil {
		t.Fatal(err)
	}
	thawed := time.Now()
	waitFor(t, time.Minute, 200*time.Millisecond, func() bool {
		calls, ok := a.Metric("qfetch_worker_calls_in_flight")
		return a.metricSum("qfetch_worker_batches_total", `outcome="abandoned"`) >= 1 && ok && calls == 0
	}, "worker-a, thawed, giving up its stale copy")
	// Its lease lapsed while it was frozen, so it usually stops at once
	// (class "lease"); a copy that ran on would meet its aborted upload
	// or its lost claim ("superseded"). Either way it lands nothing.
	var how []string
	for series, v := range a.Metrics() {
		if strings.HasPrefix(series, "qfetch_worker_batches_total{") && strings.Contains(series, `outcome="abandoned"`) {
			how = append(how, series+" "+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	t.Logf("worker-a gave up its stale copy %v after the thaw: %v", time.Since(thawed).Round(100*time.Millisecond), how)
	for _, wp := range []*workerProc{a, bw, cw} {
		if err := wp.Stop(); err != nil {
			t.Error(err)
		}
	}

	w.checkUnchanged(id, sealed, w.snapshotRun(id))
	got := w.finalChecks(id, time.Time{})
	w.checkPrefixIsManifest(id, got.Manifest)
	found := false
	for _, mb := range got.Manifest.Batches {
		for _, o := range mb.Objects {
			if o.Key != frozenKey {
				continue
			}
			found = true
			if mb.Worker == "worker-a" || mb.Delivery < 2 {
				t.Errorf("batch %s, frozen mid-upload in worker-a, stored by %s on delivery %d; want another worker on a redelivery", mb.Batch, mb.Worker, mb.Delivery)
			}
		}
	}
	if !found {
		t.Errorf("the manifest does not name %s, the object worker-a was uploading", frozenKey)
	}
	w.noDeadLetters()
}

// 14. A batch split after its page 1 was stored: detection answers are
// truncated at 50 hosts, and page 2 of every batch of at least 200 hosts
// stalls past the worker's idle timeout (qualysim's StallLaterPages), so
// batch 1 (250 hosts) stores page 1, fails at page 2 until it is split,
// and its halves (125 hosts: no stall) are stored page by page. Batch 2
// (the rest, under 200 hosts) is paged through as it is. The sealed run
// holds each host once: no page of the split parent is left in
// detections/, and the manifest names the halves.
func testSplitAfterPage1(t *testing.T, b bins) {
	const truncation, batchSize, stallFrom = 50, 250, 200
	sim := startSim(t, b, append(dataset(400, 14), "--concurrency-limit", "0", "--stall", "30s")...)
	f := sim.Faults()
	f.StallLaterPages = stallFrom
	sim.SetFaults(f)
	w := newWorld(t, b, sim, sharedBucket(t))
	w.BatchSize = batchSize
	id := w.plan()
	rec := w.Run(id)
	if rec.BatchesPlanned != 2 || rec.HostsPlanned <= batchSize || rec.HostsPlanned-batchSize >= stallFrom {
		t.Fatalf("run %s: %d hosts in %d batches; the scenario wants one batch of %d and one under %d",
			id, rec.HostsPlanned, rec.BatchesPlanned, batchSize, stallFrom)
	}

	// Failed attempts wait at most 1 s before the next (the split comes
	// after the third); every page answer is truncated at 50 hosts.
	extra := []string{"QFETCH_QUALYS_TRUNCATION_LIMIT=" + strconv.Itoa(truncation), "QFETCH_WORKER_MAX_BACKOFF=1s"}
	workers := []*workerProc{w.workerWith("worker-1", 1, "", extra...), w.workerWith("worker-2", 1, "", extra...)}
	w.waitComplete(id, 2*time.Minute)

	stalls := sim.Detection().Outcomes["fault/stall"]
	var splits float64
	for _, wp := range workers {
		splits += wp.metricSum("qfetch_worker_batches_total", `outcome="split"`)
	}
	t.Logf("%d detection calls stalled at a later page; %.0f batches split", stalls, splits)
	// A page 2 is asked for only after page 1 was stored: each stall is an
	// attempt that left its page 1 behind.
	if stalls < 3 || splits != 1 {
		t.Errorf("%d stalled page-2 calls and %.0f splits; want at least 3 (one per attempt before the split) and 1", stalls, splits)
	}

	got := w.finalChecks(id, time.Time{})
	w.checkPrefixIsManifest(id, got.Manifest)
	var keys []string
	paged := map[string]int{}
	for _, mb := range got.Manifest.Batches {
		keys = append(keys, mb.Batch)
		paged[mb.Batch] = len(mb.Objects)
	}
	slices.Sort(keys)
	if want := []string{"1.1", "1.2", "2"}; !slices.Equal(keys, want) {
		t.Errorf("manifest batches %v, want %v: batch 1 as its two halves", keys, want)
	}
	for batch, n := range paged {
		if n < 2 {
			t.Errorf("batch %s is stored as %d object(s); truncation at %d hosts should page it", batch, n, truncation)
		}
	}
	if len(got.Manifest.Splits) != 1 || got.Manifest.Splits[0].Batch != "1" {
		t.Errorf("manifest splits %+v, want batch 1's", got.Manifest.Splits)
	}
	parent := objstore.DetectionKey(prefix, id, 1, 1)
	parentPages := strings.TrimSuffix(parent, ".xml") + "-p"
	for _, key := range slices.Sorted(maps.Keys(w.snapshotRun(id))) {
		if key == parent || strings.HasPrefix(key, parentPages) {
			t.Errorf("%s, a page of split batch 1, is still in the sealed run", key)
		}
	}
	w.noDeadLetters()
}

// metricSum adds up every series of metric name whose labels contain
// label (`outcome="split"`); 0 when the worker does not answer.
func (wp *workerProc) metricSum(name, label string) float64 {
	var sum float64
	for series, v := range wp.Metrics() {
		if n, labels, _ := strings.Cut(series, "{"); n == name && strings.Contains(labels, label) {
			sum += v
		}
	}
	return sum
}

// uploadsUnder lists the keys of the incomplete multipart uploads under
// keyPrefix. The whole bucket is listed and filtered here: MinIO lists
// uploads for no prefix or an exact key, never for a shorter prefix
// (minio/minio#20989).
func (w *world) uploadsUnder(keyPrefix string) []string {
	ctx, cancel := context.WithTimeout(w.t.Context(), 10*time.Second)
	defer cancel()
	var keys []string
	for u := range w.s3.Client.ListIncompleteUploads(ctx, w.s3.Bucket, "", true) {
		if u.Err == nil && strings.HasPrefix(u.Key, keyPrefix) {
			keys = append(keys, u.Key)
		}
	}
	return keys
}

// objectState is an object as a snapshot of a run holds it.
type objectState struct {
	ETag   string
	Bytes  int64
	SHA256 string
}

// snapshotRun reads every object under run id's prefix but status.json,
// which workers refresh after the seal too.
func (w *world) snapshotRun(id string) map[string]objectState {
	t := w.t
	t.Helper()
	status := objstore.StatusKey(prefix, id)
	out := map[string]objectState{}
	for o := range w.s3.Client.ListObjects(t.Context(), w.s3.Bucket, minio.ListObjectsOptions{Prefix: objstore.RunPrefix(prefix, id), Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("listing run %s: %v", id, o.Err)
		}
		if o.Key == status {
			continue
		}
		sum := sha256.Sum256(w.getObject(o.Key))
		out[o.Key] = objectState{ETag: o.ETag, Bytes: o.Size, SHA256: hex.EncodeToString(sum[:])}
	}
	return out
}

// checkUnchanged fails the test unless run id's objects now (after) are
// those of the snapshot taken at its seal (before), key by key (I8).
func (w *world) checkUnchanged(id string, before, after map[string]objectState) {
	t := w.t
	t.Helper()
	if len(before) == 0 {
		t.Errorf("run %s: the snapshot at the seal holds no object; the check proves nothing", id)
	}
	for key, was := range before {
		switch now, ok := after[key]; {
		case !ok:
			t.Errorf("run %s: %s was deleted after the seal", id, key)
		case now != was:
			t.Errorf("run %s: %s changed after the seal: %+v, was %+v", id, key, now, was)
		}
	}
	for key, now := range after {
		if _, ok := before[key]; !ok {
			t.Errorf("run %s: %s appeared after the seal: %+v", id, key, now)
		}
	}
}

// checkPrefixIsManifest fails the test unless every object under run id's
// prefix is one manifest m names, or manifest.json, _SUCCESS or status.json
// (checkRun checks the named ones' bytes and hashes).
func (w *world) checkPrefixIsManifest(id string, m finish.Manifest) {
	t := w.t
	t.Helper()
	named := map[string]bool{
		objstore.ManifestKey(prefix, id): true,
		objstore.SuccessKey(prefix, id):  true,
		objstore.StatusKey(prefix, id):   true,
	}
	for _, o := range m.HostList {
		named[o.Key] = true
	}
	for _, mb := range m.Batches {
		for _, o := range mb.Objects {
			named[o.Key] = true
		}
	}
	for o := range w.s3.Client.ListObjects(t.Context(), w.s3.Bucket, minio.ListObjectsOptions{Prefix: objstore.RunPrefix(prefix, id), Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("listing run %s: %v", id, o.Err)
		}
		if !named[o.Key] {
			t.Errorf("run %s: %s is under the run's prefix but not in its manifest", id, o.Key)
		}
	}
}
