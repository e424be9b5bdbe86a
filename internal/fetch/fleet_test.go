package fetch_test

// The fleet's seams (issue: the fleet decides as one). Each test runs
// several workers, each with a NATS connection of its own, as pods do.

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// pod is a worker with a NATS connection of its own to natsURL ("": the
// test's server), as a separate pod has.
func (e *env) pod(owner, natsURL string, cfg fetch.Config) *fetch.Worker {
	e.t.Helper()
	return e.podAckWait(owner, natsURL, e.o.ackWait, cfg)
}

// podAckWait is pod with a msg.Config whose AckWait is ackWait: a pod
// started before (or after) an operator changed QFETCH_ACK_WAIT. Its Setup
// brings the shared consumer to ackWait.
func (e *env) podAckWait(owner, natsURL string, ackWait time.Duration, cfg fetch.Config) *fetch.Worker {
	e.t.Helper()
	p := e.podParts(owner, natsURL, ackWait)
	p.Finish = testrun.NoFinish
	return p.Worker(podConfig(cfg), nil)
}

// podParts are the parts of a pod with a NATS connection of its own to
// natsURL ("": the test's server) and a client of its own.
func (e *env) podParts(owner, natsURL string, ackWait time.Duration) app.Parts {
	e.t.Helper()
	if natsURL == "" {
		natsURL = e.r.NATSURL
	}
	js := testenv.Connect(e.t, natsURL)
	mq, err := msg.Setup(e.t.Context(), js, msg.Config{MaxInFlight: e.o.maxInFlight, AckWait: ackWait, MaxFailures: e.o.maxFailures})
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := ledger.Setup(e.t.Context(), js, ledger.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	p := e.r.Parts(owner)
	if os.Getenv("QFETCH_TEST_DEBUG") != "" {
		p.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("pod", owner)
	}
	p.Queue = app.JetStream{Queue: mq, Ledger: l}
	p.Qualys = e.r.NewClient(e.sim.Password())
	return p
}

// podConfig fills a pod's unset timings with test-short ones.
func podConfig(cfg fetch.Config) fetch.Config {
	if cfg.ProbeEvery == 0 {
		cfg.ProbeEvery = 100 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 50 * time.Millisecond
	}
	if cfg.PullWait == 0 {
		cfg.PullWait = 200 * time.Millisecond
	}
	return cfg
}

// callIDs is the ids of a detection call, read from a copy of its form:
// the simulator reads the body too.
func callIDs(r *http.Request) (string, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", err
	}
	if ids := form.Get("ids"); ids != "" {
		return ids, nil
	}
	return r.URL.Query().Get("ids"), nil
}

// detectionCalls watches the detection calls reaching the simulator: how
// many run at once, and the fleet's probes (the calls without ids).
type detectionCalls struct {
	mu      sync.Mutex
	running int
	peak    int
	probes  []time.Time
	byFirst map[string]int // calls by the batch's first id range
	// refuse, when it returns true for a call's ids, answers it with a
	// reset instead of passing it on.
	refuse func(ids string) bool
	// hold, when it returns true for a call's ids, keeps the call until
	// the client goes away.
	hold func(ids string) bool
	// stall, when it returns true for a call's ids, starts the answer and
	// then sends nothing more until the client goes away: a stall.
	stall func(ids string) bool
	// answer, when set and it returns a status, answers the call with it
	// and body instead of the simulator.
	answer func(ids string) (status int, header http.Header, body string)
}

func (d *detectionCalls) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/vm/detection/") {
			next.ServeHTTP(w, r)
			return
		}
		ids, err := callIDs(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		first, _, _ := strings.Cut(ids, ",")
		d.mu.Lock()
		if d.byFirst == nil {
			d.byFirst = map[string]int{}
		}
		d.running++
		d.peak = max(d.peak, d.running)
		if ids == "" {
			d.probes = append(d.probes, time.Now())
		} else {
			d.byFirst[first]++
		}
		refuse, hold, stall, answer := d.refuse, d.hold, d.stall, d.answer
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			d.running--
			d.mu.Unlock()
		}()
		switch {
		case ids != "" && refuse != nil && refuse(ids):
			panic(http.ErrAbortHandler) // the connection is cut: a retryable transport failure
		case ids != "" && hold != nil && hold(ids):
			<-r.Context().Done()
			return
		case ids != "" && stall != nil && stall(ids):
			w.Header().Set("Content-Type", "text/xml")
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" ?>`+"\n<HOST_LIST_VM_DETECTION_OUTPUT>")
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			<-r.Context().Done()
			return
		}
		if answer != nil {
			if status, h, body := answer(ids); status != 0 {
				for k, v := range h {
					w.Header()[k] = v
				}
				w.WriteHeader(status)
				_, _ = w.Write([]byte(body))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func (d *detectionCalls) calls(first string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.byFirst[first]
}

// batchCalls is the number of calls for batches (probes aside).
func (d *detectionCalls) batchCalls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.byFirst {
		n += c
	}
	return n
}

func (d *detectionCalls) stats() (peak int, probes []time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peak, slices.Clone(d.probes)
}

// holdOnce holds b's first call until its client goes away; the flag it
// returns is set once that call has started.
func (d *detectionCalls) holdOnce(b msg.Batch) *atomic.Bool {
	first := firstRange(b)
	var held atomic.Bool
	d.mu.Lock()
	d.hold = func(ids string) bool {
		f, _, _ := strings.Cut(ids, ",")
		return f == first && held.CompareAndSwap(false, true)
	}
	d.mu.Unlock()
	return &held
}

// setupCalls is setup with the detection calls watched.
func setupCalls(t *testing.T, o opts, d *detectionCalls) *env {
	t.Helper()
	o.wrap = d.wrap
	return setup(t, o)
}

func firstRange(b msg.Batch) string {
	first, _, _ := strings.Cut(b.IDs, ",")
	return first
}

// TestPoisonBatchesDeadLetterWhileTheRestIsFetched: two batches that fail
// on their own every time (a proxy that cuts their bodies), one slot per
// pod and a fleet cap of two. Their failures alternate, so the fleet's
// breaker suspects an outage; the probe passes, so the charges stand. Both
// end in the dead letters after exactly MaxFailures charges each, and every
// other batch is fetched meanwhile.
func TestPoisonBatchesDeadLetterWhileTheRestIsFetched(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 1000, batchSize: 100, maxFailures: 3, maxInFlight: 2}, d)
	poison := map[string]bool{firstRange(e.batch[1]): true, firstRange(e.batch[2]): true}
	d.mu.Lock()
	d.refuse = func(ids string) bool { first, _, _ := strings.Cut(ids, ","); return poison[first] }
	d.mu.Unlock()
	for i := range 2 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		return len(e.deadLetters()) == 2 && e.done() == len(e.batch)-2
	}, "poison batches not both dead-lettered with the rest done")
	// Each is charged exactly MaxFailures times (the dead letters' reason
	// below). A failure that lands while the breaker's pause is on is not
	// charged, by design, so under load a batch may take a call or two more
	// — never so many that the queue is burned.
	for _, b := range e.batch[1:3] {
		if n := d.calls(firstRange(b)); n < 3 || n > 6 {
			t.Errorf("batch %s: %d calls, want MaxFailures = 3 charged (and at most one uncharged per pause)", b.Key(), n)
		}
	}
	for _, dl := range e.deadLetters() {
		if dl.Reason != "3 failed attempts" {
			t.Errorf("dead letter %s: reason %q", dl.Batch, dl.Reason)
		}
	}
	var rest []msg.Batch
	for i, b := range e.batch {
		if i != 1 && i != 2 {
			rest = append(rest, b)
		}
	}
	e.checkBucket(rest)
}

// TestOutageAcrossSixPodsChargesNothing: six single-slot pods, a fleet cap
// of two, MaxFailures 3 and forty 503s in a row. The fleet pauses as one,
// the failures that tripped its breaker are forgiven once the probe fails,
// and no batch is charged or dead-lettered. One probe per period for the
// whole fleet.
func TestOutageAcrossSixPodsChargesNothing(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 1200, batchSize: 100, maxFailures: 3, maxInFlight: 2}, d)
	if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 40); err != nil {
		t.Fatal(err)
	}
	// Probes are timed as they reach the simulator, which a loaded
	// machine delays by tens of milliseconds after the claim: the period
	// is long enough for the check below to allow for that, and six pods
	// probing each on its own would still come closer together than it.
	const probeEvery = 250 * time.Millisecond
	for i := range 6 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1, ProbeEvery: probeEvery}))
	}
	testenv.Eventually(t, 90*time.Second, func() bool { return e.done()+len(e.deadLetters()) == len(e.batch) },
		"batches neither done nor dead")
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("an outage dead-lettered %d batches (I6): %s", len(dl), dl[0].Reason)
	}
	fails, err := e.q.Failures(t.Context(), run)
	if err != nil {
		t.Fatal(err)
	}
	for b, n := range fails {
		if n != 0 {
			t.Errorf("batch %s charged %d failures by an outage", b, n)
		}
	}
	if st := e.sim.Stats().Endpoints[qualysim.Detection]; st.Outcomes["fault/503"] != 40 {
		t.Fatalf("outcomes %v: the outage did not happen as planned", st.Outcomes)
	}
	peak, probes := d.stats()
	if peak > 2 {
		t.Errorf("%d detection calls at once (probes included), cap 2", peak)
	}
	if len(probes) < 2 {
		t.Fatalf("%d probes: the outage was not probed", len(probes))
	}
	for i := 1; i < len(probes); i++ {
		// The claim is taken on each pod's clock, and the probe's
		// request reaches the simulator some time after it.
		if gap := probes[i].Sub(probes[i-1]); gap < probeEvery/2 {
			t.Fatalf("probes %d and %d %s apart: more than one per period (%s) for the fleet", i-1, i, gap, probeEvery)
		}
	}
	e.checkBucket(e.batch)
}

// TestRetryFreesItsSlot: with a fleet cap of one, a batch waiting out a
// long back-off (15–30 s) leaves the slot to the queued batches, which are
// all fetched meanwhile.
func TestRetryFreesItsSlot(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 600, batchSize: 100, maxFailures: 3, maxInFlight: 1}, d)
	first := firstRange(e.batch[0])
	var failed atomic.Bool
	d.mu.Lock()
	d.refuse = func(ids string) bool {
		f, _, _ := strings.Cut(ids, ",")
		return f == first && failed.CompareAndSwap(false, true)
	}
	d.mu.Unlock()
	for i := range 2 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1, MaxBackoff: time.Minute}))
	}
	// 10 s is far below the back-off: only a freed slot lets them through.
	testenv.Eventually(t, 10*time.Second, func() bool { return e.done() == len(e.batch)-1 },
		"the queued batches were not fetched while one batch waited its back-off")
	if !failed.Load() {
		t.Fatal("the first batch never failed")
	}
	if n := e.queued(); n != 1 {
		t.Fatalf("%d messages queued, want the one scheduled retry", n)
	}
	e.checkBucket(e.batch[1:])
}

// TestBackPressureHoldsTheFleet: a 1965 answer with ToWait 2 s to one pod
// holds every pod's pulls until the wait is over, and charges nothing.
func TestBackPressureHoldsTheFleet(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 1500, batchSize: 100, maxFailures: 2, maxInFlight: 3}, d)
	var (
		refusedAt atomic.Int64
		starts    []time.Time
		mu        sync.Mutex
	)
	d.mu.Lock()
	d.answer = func(ids string) (int, http.Header, string) {
		mu.Lock()
		starts = append(starts, time.Now())
		n := len(starts)
		mu.Unlock()
		if n != 3 {
			return 0, nil, ""
		}
		refusedAt.Store(time.Now().UnixNano())
		h := http.Header{"X-Ratelimit-Towait-Sec": {"2"}, "Content-Type": {"application/xml"}}
		return http.StatusConflict, h, rateLimitDoc
	}
	d.mu.Unlock()
	for i := range 3 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not all done")
	at := time.Unix(0, refusedAt.Load())
	// Calls already on their way when the hold was recorded may start
	// just after it; none may start well inside it.
	from, to := at.Add(500*time.Millisecond), at.Add(2*time.Second)
	mu.Lock()
	defer mu.Unlock()
	for _, s := range starts {
		if s.After(from) && s.Before(to) {
			t.Fatalf("a call started %s after a 1965 that asked the fleet to wait 2 s", s.Sub(at))
		}
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("back-pressure dead-lettered %d batches", len(dl))
	}
	fails, _ := e.q.Failures(t.Context(), run)
	for b, n := range fails {
		if n != 0 {
			t.Errorf("batch %s charged %d failures by back-pressure", b, n)
		}
	}
}

const rateLimitDoc = `<?xml version="1.0" encoding="UTF-8" ?>
<!DOCTYPE SIMPLE_RETURN SYSTEM "https://qualysapi.qualys.com/api/2.0/simple_return.dtd">
<SIMPLE_RETURN><RESPONSE><DATETIME>2026-01-10T00:00:00Z</DATETIME><CODE>1965</CODE>
<TEXT>This API cannot be run again for another 2 seconds.</TEXT>
<ITEM_LIST><ITEM><KEY>SECONDS_TO_WAIT</KEY><VALUE>2</VALUE></ITEM></ITEM_LIST></RESPONSE></SIMPLE_RETURN>
`

// TestProbeNeverStopsTheFleet: where /msp/about.php answers 404 the probe
// still works (it is a detection call); and a probe that answers something
// unexpected resumes the fleet instead of holding it forever.
func TestProbeNeverStopsTheFleet(t *testing.T) {
	t.Run("about.php 404", func(t *testing.T) {
		d := &detectionCalls{}
		e := setupCalls(t, opts{hosts: 600, batchSize: 100, maxFailures: 3, sim: qualysim.Config{NoAbout: true}}, d)
		if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 6); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
		}
		testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) }, "the fleet did not resume")
		if dl := e.deadLetters(); len(dl) != 0 {
			t.Fatalf("%d dead letters", len(dl))
		}
		e.checkBucket(e.batch)
	})
	t.Run("probe answers 404", func(t *testing.T) {
		d := &detectionCalls{}
		e := setupCalls(t, opts{hosts: 600, batchSize: 100, maxFailures: 5}, d)
		if err := e.sim.ForceFault(qualysim.Detection, qualysim.Fault503, 4); err != nil {
			t.Fatal(err)
		}
		d.mu.Lock()
		d.answer = func(ids string) (int, http.Header, string) {
			if ids == "" {
				return http.StatusNotFound, http.Header{"Content-Type": {"text/html"}}, "<html><body>Not Found</body></html>"
			}
			return 0, nil, ""
		}
		d.mu.Unlock()
		for i := range 2 {
			e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
		}
		testenv.Eventually(t, 60*time.Second, func() bool { return e.done() == len(e.batch) }, "a 404 probe stopped the fleet")
		e.checkBucket(e.batch)
	})
}

// TestPartitionedWorkerYieldsItsCall: a worker cut off from NATS (its
// connection frozen, not closed) cannot renew its batch's lease; it stops
// its Qualys call before JetStream hands the batch to another worker, so
// the cap of one holds at Qualys through the partition.
func TestPartitionedWorkerYieldsItsCall(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 200, batchSize: 100, maxInFlight: 1, ackWait: 2 * time.Second}, d)
	held := d.holdOnce(e.batch[0])
	proxy := testenv.NewProxy(t, strings.TrimPrefix(e.r.NATSURL, "nats://"))
	a := e.pod("pod-a", "nats://"+proxy.Addr(), fetch.Config{Slots: 1})
	e.start(a)
	testenv.Eventually(t, 10*time.Second, held.Load, "pod A's call never started")
	proxy.Freeze()
	e.start(e.pod("pod-b", "", fetch.Config{Slots: 1}))
	testenv.Eventually(t, 30*time.Second, func() bool { return e.done() == len(e.batch) }, "batches not done by pod B")
	proxy.Thaw()
	if peak, _ := d.stats(); peak > 1 {
		t.Fatalf("%d detection calls at once through a partition, cap 1 (I5)", peak)
	}
	e.checkBucket(e.batch)
}

// TestPausedFleetAtTheCapProbes: the fleet is paused for an outage while
// its whole cap of two is held by copies a worker lost (it died before
// acking them). JetStream hands such copies out again only to a pull, and
// a paused fleet pulls nothing, while its probe waits for a free slot:
// nothing would ever run again. A worker takes the copies off the queue
// as retries; the probe runs in their slots and passes, and every batch,
// the lost ones too, is fetched without a dead letter.
func TestPausedFleetAtTheCapProbes(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 400, batchSize: 100, maxInFlight: 2, ackWait: 2 * time.Second}, d)
	for range 2 {
		m, err := e.q.Next(t.Context(), 5*time.Second)
		if err != nil || m == nil {
			t.Fatalf("the lost worker's pull: %v, %v", m, err)
		}
	}
	if _, err := e.fleet("test").Pause(t.Context(), ledger.PauseOutage, "test: an outage"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		e.start(e.pod(fmt.Sprintf("pod-%d", i), "", fetch.Config{Slots: 1}))
	}
	testenv.Eventually(t, time.Minute, func() bool { return e.done() == len(e.batch) },
		"the fleet paused at its cap never probed and resumed")
	if _, probes := d.stats(); len(probes) == 0 {
		t.Fatal("the fleet resumed without a probe")
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters", len(dl))
	}
	e.checkBucket(e.batch)
}
