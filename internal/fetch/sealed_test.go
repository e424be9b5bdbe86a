package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// sealedPod is a pod (a NATS connection of its own to natsURL, "" for the
// test's server) that finishes runs, writing through store.
func (e *env) sealedPod(owner, natsURL string, store app.Store, cfg fetch.Config) *fetch.Worker {
	e.t.Helper()
	p := e.podParts(owner, natsURL, e.o.ackWait)
	p.Store = store
	p.Finish = p.Finisher(finish.Config{})
	return p.Worker(podConfig(cfg), nil)
}

// frozenStore models a pod frozen (SIGSTOP, a GC pause, a VM stall) right
// before it completes an upload: the freeze-th Complete reads its page whole,
// then waits for thaw, then completes whatever its context says by then —
// as a process that checked its lease, froze, and woke up would.
type frozenStore struct {
	app.Store
	freeze  int32 // which Complete call freezes, from 1
	calls   atomic.Int32
	frozen  chan struct{}
	thaw    chan struct{}
	outcome chan error
}

func newFrozenStore(s app.Store, freeze int32) *frozenStore {
	return &frozenStore{Store: s, freeze: freeze, frozen: make(chan struct{}), thaw: make(chan struct{}), outcome: make(chan error, 1)}
}

func (f *frozenStore) Complete(ctx context.Context, u objstore.Upload, r io.Reader) (objstore.Object, error) {
	if f.calls.Add(1) != f.freeze {
		return f.Store.Complete(ctx, u, r)
	}
	page, err := io.ReadAll(r)
	if err != nil {
		return objstore.Object{}, err
	}
	close(f.frozen)
	<-f.thaw
	obj, err := f.Store.Complete(context.WithoutCancel(ctx), u, bytes.NewReader(page))
	f.outcome <- err
	return obj, err
}

// runObjects is every object under the run's prefix: key → sha256 of its
// bytes, read back.
func (e *env) runObjects() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for o, err := range e.store.List(e.t.Context(), objstore.RunPrefix("qualys", run)) {
		if err != nil {
			e.t.Fatal(err)
		}
		r, err := e.store.Get(e.t.Context(), o.Key)
		if err != nil {
			e.t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, r); err != nil {
			e.t.Fatal(err)
		}
		r.Close()
		out[o.Key] = hex.EncodeToString(h.Sum(nil))
	}
	return out
}

// checkSealed checks I8 on the bucket: the run has _SUCCESS, and its
// detections/ and hostlist/ hold exactly the manifest's objects, each with
// the manifest's sha256.
func (e *env) checkSealed(objects map[string]string) finish.Manifest {
	e.t.Helper()
	var m finish.Manifest
	r, err := e.store.Get(e.t.Context(), objstore.ManifestKey("qualys", run))
	if err != nil {
		e.t.Fatal(err)
	}
	err = json.NewDecoder(r).Decode(&m)
	r.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	if _, ok := objects[objstore.SuccessKey("qualys", run)]; !ok {
		e.t.Fatal("no _SUCCESS")
	}
	listed := map[string]string{}
	for _, p := range m.HostList {
		listed[p.Key] = p.SHA256
	}
	for _, b := range m.Batches {
		for _, o := range b.Objects {
			listed[o.Key] = o.SHA256
		}
	}
	prefix := objstore.RunPrefix("qualys", run)
	for key, sum := range objects {
		rest := strings.TrimPrefix(key, prefix)
		if !strings.HasPrefix(rest, "detections/") && !strings.HasPrefix(rest, "hostlist/") {
			continue
		}
		want, ok := listed[key]
		switch {
		case !ok:
			e.t.Errorf("%s is under the sealed run but not in its manifest", key)
		case want != "" && want != sum:
			e.t.Errorf("%s: sha256 %s, the manifest says %s", key, sum[:12], want[:12])
		}
	}
	for key := range listed {
		if _, ok := objects[key]; !ok {
			e.t.Errorf("%s is in the manifest but not in the bucket", key)
		}
	}
	return m
}

// TestLateCopyCannotLandInASealedRun: pod A holds the batch and freezes
// right before it completes an upload, its NATS cut off, so the batch goes
// to pod B after AckWait; B stores it and completes the run. A then wakes
// and completes its upload as if nothing happened. B took the batch's claim
// and aborted A's uploads first, so the store refuses A's: the sealed run
// is unchanged, object for object. With a truncated answer A freezes on
// page 2, after its page 1 landed: B's pages replace it.
func TestLateCopyCannotLandInASealedRun(t *testing.T) {
	for _, tc := range []struct {
		name       string
		truncation int
		freezeAt   int32 // A's Complete call that freezes
	}{
		{"one page", 0, 1},
		{"second page", 60, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, opts{hosts: 200, batchSize: 200, ackWait: 2 * time.Second})
			e.setRun(ledger.RunRecord{ID: run, After: e.after, Before: e.before,
				State: ledger.RunFetching, PlanningComplete: true, BatchesPlanned: 1, HostsPlanned: e.batch[0].Hosts})
			proxy := testenv.NewProxy(t, strings.TrimPrefix(e.r.NATSURL, "nats://"))
			frozen := newFrozenStore(e.r.Store, tc.freezeAt)
			cfg := fetch.Config{Slots: 1, TruncationLimit: tc.truncation}
			stopA := e.start(e.sealedPod("pod-a", "nats://"+proxy.Addr(), frozen, cfg))
			testenv.Eventually(t, 20*time.Second, func() bool {
				select {
				case <-frozen.frozen:
					return true
				default:
					return false
				}
			}, "pod A never reached the upload it freezes on")
			proxy.Freeze()
			e.sim.Advance(time.Hour) // B's answer differs from A's
			e.start(e.sealedPod("pod-b", "", e.r.Store, cfg))
			testenv.Eventually(t, 30*time.Second, func() bool {
				r, err := e.q.GetRun(t.Context(), run)
				return err == nil && r.State == ledger.RunComplete
			}, "pod B did not complete the run")
			sealed := e.runObjects()
			e.checkSealed(sealed)

			close(frozen.thaw)
			if err := <-frozen.outcome; !errors.Is(err, objstore.ErrUploadGone) {
				t.Fatalf("pod A's late upload completed (err %v): the store must refuse it", err)
			}
			proxy.Thaw()
			stopA()
			after := e.runObjects()
			for key, sum := range sealed {
				if after[key] != sum && !strings.HasSuffix(key, "status.json") {
					t.Errorf("%s changed after _SUCCESS", key)
				}
			}
			for key := range after {
				if _, ok := sealed[key]; !ok {
					t.Errorf("%s appeared after _SUCCESS", key)
				}
			}
			m := e.checkSealed(after)
			if m.Batches[0].Worker != "pod-b" {
				t.Fatalf("the manifest's batch is pod %s's", m.Batches[0].Worker)
			}
			rs, err := e.q.DoneBatches(t.Context(), run)
			if err != nil || len(rs) != 1 || rs[0].Worker != "pod-b" {
				t.Fatalf("done records %+v, %v: want pod B's", rs, err)
			}
			if n := e.incompleteUploads(); n != 0 {
				t.Fatalf("%d uploads left open", n)
			}
		})
	}
}

// TestEndedRunsDrain: the queued batches of a failed run, or of a run an
// operator accepted incomplete, are acked without a call and counted, so
// the next run's batches do not wait behind them.
func TestEndedRunsDrain(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  ledger.RunRecord
	}{
		{"failed", ledger.RunRecord{State: ledger.RunFailed, Error: "host list: access denied"}},
		{"accepted incomplete", ledger.RunRecord{State: ledger.RunFetching, PlanningComplete: true, BatchesPlanned: 3,
			Accepted: &ledger.Acceptance{By: "ops", At: time.Now(), Dropped: []string{"4"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &detectionCalls{}
			e := setupCalls(t, opts{hosts: 300, batchSize: 100}, d)
			rec := tc.rec
			rec.ID, rec.After, rec.Before = run, e.after, e.before
			e.setRun(rec)
			reg := prometheus.NewRegistry()
			stop := e.start(e.workerWith(e.r.NewClient(e.sim.Password()), fetch.Config{Slots: 2}, reg))
			testenv.Eventually(t, 20*time.Second, func() bool { return e.queued() == 0 }, "batches not drained")
			stop()
			if n := d.batchCalls(); n != 0 {
				t.Fatalf("%d detection calls for an ended run", n)
			}
			n, err := e.q.CountDrained(t.Context(), run)
			if err != nil || n != len(e.batch) {
				t.Fatalf("drained count %d, %v; want %d", n, err, len(e.batch))
			}
			if got := counter(t, reg, "qfetch_worker_batches_total", map[string]string{"outcome": "drained"}); got != float64(len(e.batch)) {
				t.Fatalf("drained metric %v, want %d", got, len(e.batch))
			}
			if done := e.done(); done != 0 {
				t.Fatalf("%d batches recorded done", done)
			}
		})
	}
}

// stallParentPage2 stalls every later page of the unsplit batch (as a
// backend that chokes on a big batch does) and passes everything else.
func stallParentPage2(parentIDs *atomic.Pointer[string]) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/vm/detection/") {
				ids, err := callIDs(r)
				if p := parentIDs.Load(); err == nil && p != nil && ids == *p && strings.Contains(formOf(r), "id_min=") {
					w.Header().Set("Content-Type", "text/xml")
					_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" ?>`+"\n<HOST_LIST_VM_DETECTION_OUTPUT>")
					if f, ok := w.(http.Flusher); ok {
						f.Flush()
					}
					<-r.Context().Done()
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// formOf is the request's form as sent (body and query).
func formOf(r *http.Request) string {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return string(body) + "&" + r.URL.RawQuery
}

// TestSplitLeavesNoParentPages: a truncated batch stores page 1, then its
// page 2 keeps stalling, so it is split; the halves complete the run. The
// parent's page 1 must not stay in the sealed prefix: its hosts are in the
// halves, and an analyst listing detections/ would read them twice.
func TestSplitLeavesNoParentPages(t *testing.T) {
	var parent atomic.Pointer[string]
	e := setup(t, opts{hosts: 200, batchSize: 200, wrap: stallParentPage2(&parent)})
	parent.Store(&e.batch[0].IDs)
	e.setRun(ledger.RunRecord{ID: run, After: e.after, Before: e.before,
		State: ledger.RunFetching, PlanningComplete: true, BatchesPlanned: 1, HostsPlanned: e.batch[0].Hosts})
	e.start(e.sealedPod("pod-a", "", e.r.Store, fetch.Config{Slots: 1, TruncationLimit: 40, SplitAfter: 2}))
	testenv.Eventually(t, 60*time.Second, func() bool {
		r, err := e.q.GetRun(t.Context(), run)
		return err == nil && r.State == ledger.RunComplete
	}, "run not complete")
	objects := e.runObjects()
	m := e.checkSealed(objects)
	if len(m.Splits) != 1 {
		t.Fatalf("splits %+v: the parent was never split", m.Splits)
	}
	if _, ok := objects[objstore.DetectionKey("qualys", run, 1, 1)]; ok {
		t.Fatal("the split parent's page 1 is still in the sealed run")
	}
	first, second, _ := e.batch[0].Split()
	e.checkHalves(first, second)
}

// checkHalves compares the halves' stored pages with the simulator's truth,
// host by host, and checks that no host is stored twice across the run.
func (e *env) checkHalves(halves ...msg.Batch) {
	e.t.Helper()
	rs, err := e.q.DoneBatches(e.t.Context(), run)
	if err != nil {
		e.t.Fatal(err)
	}
	byKey := map[string]ledger.BatchResult{}
	for _, r := range rs {
		byKey[r.Batch] = r
	}
	seen := map[uint64]string{}
	for _, h := range halves {
		r, ok := byKey[h.Key()]
		if !ok {
			e.t.Fatalf("half %s not done", h.Key())
		}
		want := e.truth(h)
		got := 0
		for _, o := range r.Objects {
			got += e.hostsIn(o.Key, seen)
		}
		if got != len(want) {
			e.t.Fatalf("half %s: %d hosts stored, truth %d", h.Key(), got, len(want))
		}
	}
}

// truth is what the simulator says batch b's answer holds: detections per
// host.
func (e *env) truth(b msg.Batch) map[uint64]int {
	e.t.Helper()
	ids, err := qualysim.ParseIDs(b.IDs)
	if err != nil {
		e.t.Fatal(err)
	}
	all, _ := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	return e.sim.DetectionCounts(qualysim.Filter{IDs: ids, After: b.After, Before: b.Before, Statuses: all})
}

// hostsIn validates the object at key and counts its hosts, failing the
// test for a host that seen already holds.
func (e *env) hostsIn(key string, seen map[uint64]string) int {
	e.t.Helper()
	r, err := e.store.Get(e.t.Context(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	v := qualys.NewValidator(r, qualys.ValidatorConfig{Root: qualys.RootDetections, OnID: func(id uint64) {
		if other, ok := seen[id]; ok {
			e.t.Errorf("host %d stored twice: %s and %s", id, other, key)
		}
		seen[id] = key
	}})
	if _, err := io.Copy(io.Discard, v); err != nil {
		e.t.Fatalf("%s: %v", key, err)
	}
	return v.Summary().Hosts
}
