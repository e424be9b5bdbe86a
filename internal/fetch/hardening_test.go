package fetch_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// gauge reads a gauge of reg by name.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}

// publishRaw publishes body on the run's batch subject as anyone with
// access to NATS could, bypassing Encode.
func (e *env) publishRaw(body []byte) {
	e.t.Helper()
	if _, err := e.js.Publish(e.t.Context(), msg.BatchSubject(run), body); err != nil {
		e.t.Fatalf("the stream refuses a %d-byte message: %v", len(body), err)
	}
}

// TestForgedParamsDeadLettered: batch messages whose parameters the
// planner's configuration could not hold (an owned name in another case, an
// unknown name) are dead-lettered as permanent, with a reason naming the
// parameter, and never reach Qualys; the real batch is fetched.
func TestForgedParamsDeadLettered(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100})
	forged := []struct {
		params url.Values
		want   string
	}{
		{url.Values{"Action": {"purge"}}, "parameter Action is set by qfetch"},
		{url.Values{"IDS": {"1-999999999"}}, "parameter IDS is set by qfetch"},
		{url.Values{"status": {"Fixed"}, "made_up": {"1"}}, "parameter made_up is not a Host List Detection parameter"},
	}
	for i, f := range forged {
		b := e.batch[0]
		b.Number, b.Params, b.V = 10+i, f.params, msg.SchemaVersion
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		e.publishRaw(data)
	}
	stop := e.start(e.worker(fetch.Config{Slots: 2}, ""))
	testenv.Eventually(t, 30*time.Second, func() bool {
		return len(e.deadLetters()) == len(forged) && e.done() == 1 && e.queued() == 0
	}, "forged batches not dead-lettered, or the real one not done")
	stop()
	reasons := map[string]bool{}
	for _, dl := range e.deadLetters() {
		if dl.Class != "permanent" || dl.Deliveries != 1 || !strings.HasPrefix(dl.Reason, "batch message refused: ") {
			t.Errorf("dead letter %+v", dl)
		}
		reasons[dl.Reason] = true
	}
	for _, f := range forged {
		found := false
		for r := range reasons {
			found = found || strings.Contains(r, f.want)
		}
		if !found {
			t.Errorf("no dead letter's reason says %q: %v", f.want, reasons)
		}
	}
	if n := e.sim.Stats().Endpoints[qualysim.Detection].Requests; n != 1 {
		t.Fatalf("%d detection calls, want 1 (the real batch only)", n)
	}
}

// TestOversizedMessagesDeadLettered: messages the stream accepts (up to its
// 1 MiB) but too large to be batches are dead-lettered with a bounded
// record (the head, the size, the hash) and the queue behind them moves on;
// two of them at a fleet cap of 2 used to stop everything.
func TestOversizedMessagesDeadLettered(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100})
	poison := [][]byte{
		[]byte(`{"v":1,"x":"` + strings.Repeat("a", (1<<20)-300) + `"}`),
		[]byte(`{"v":1,"run":"` + run + `","x":"` + strings.Repeat("<", 300<<10) + `"}`),
	}
	for _, p := range poison {
		e.publishRaw(p)
	}
	next := e.batch[0]
	next.Number = 2
	pub := e.q.Publisher(msg.PublisherOptions{})
	if err := pub.Publish(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	if err := pub.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	w := e.workerWith(e.r.NewClient(e.sim.Password()), fetch.Config{Slots: 2}, reg)
	stop := e.start(w)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return len(e.deadLetters()) == 2 && e.done() == 2 && e.queued() == 0
	}, "oversized messages not dead-lettered, or the batches behind them not done")
	stop()
	for i, dl := range e.deadLetters() {
		sum := sha256.Sum256(poison[i])
		if !dl.Truncated || dl.Size != len(poison[i]) || dl.SHA256 != hex.EncodeToString(sum[:]) ||
			len(dl.Body) > 4<<10 || !bytes.HasPrefix(poison[i], dl.Body) || dl.Deliveries != 1 || dl.Class != "permanent" {
			t.Errorf("dead letter %d: truncated %v size %d body %d bytes deliveries %d class %s",
				i, dl.Truncated, dl.Size, len(dl.Body), dl.Deliveries, dl.Class)
		}
	}
	if err := w.Ready(); err != nil {
		t.Fatalf("worker not ready: %v", err)
	}
	if n := counter(t, reg, "qfetch_worker_dead_letter_failures_total", nil); n != 0 {
		t.Fatalf("%v dead-letter failures", n)
	}
}

// TestDeadLetterFailureWedges: with a dead-letter stream that refuses this
// message's record (a message size limit below it; the stream itself takes
// records, so no fleet fault), a message that must be dead-lettered fails
// a few times, then the worker reports not ready (ErrWedged) and counts
// it, and the message waits 16 probe periods between tries instead of
// coming back every period. The rest of the queue proceeds; once the
// stream is back to qfetch's settings, the next try succeeds and the
// worker is ready again. (A stream that takes no record at all pauses the
// fleet instead: TestBrokenDeadLetterStreamPausesTheFleet.)
func TestDeadLetterFailureWedges(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100})
	s, err := e.js.Stream(t.Context(), msg.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.MaxMsgSize = 64 // every record is larger
	if _, err := e.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	e.publishRaw([]byte("not a batch"))
	reg := prometheus.NewRegistry()
	w := e.workerWith(e.r.NewClient(e.sim.Password()), fetch.Config{Slots: 2, ProbeEvery: 100 * time.Millisecond}, reg)
	stop := e.start(w)
	testenv.Eventually(t, 30*time.Second, func() bool { return errors.Is(w.Ready(), fetch.ErrWedged) },
		"worker ready although a message cannot be dead-lettered")
	wedged := time.Now()
	var st interface{ ReadyState() string }
	if err := w.Ready(); failure.ClassOf(err) != failure.ClassPermanent || !errors.As(err, &st) || st.ReadyState() != "wedged" {
		t.Fatalf("Ready: %v is not classed permanent with the readiness state wedged", err)
	}
	if g := gauge(t, reg, "qfetch_worker_wedged"); g != 1 {
		t.Fatalf("qfetch_worker_wedged = %v", g)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return e.done() == 1 }, "the real batch is not done while the worker is wedged")

	if st, _ := e.q.Fleet("test").State(t.Context()); st.Pause != nil {
		t.Fatalf("one message's dead-lettering paused the fleet: %+v", st.Pause)
	}
	// The operator's fix: the stream is back to qfetch's settings (Setup
	// brings its message size limit back).
	if _, err := msg.Setup(t.Context(), e.js, e.q.Config()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return len(e.deadLetters()) == 1 && w.Ready() == nil && e.queued() == 0
	}, "the message is not dead-lettered once the stream is back, or the worker stays not ready")
	stop()
	// Three failures, then a wait of 16 periods (1.6s) before each next
	// try: a Nak loop would show a delivery every 100ms. The test's own
	// steps before the stream was fixed may have outlasted a wait or two
	// on a loaded machine, and each allows one more failed try.
	waits := int(time.Since(wedged) / (16 * 100 * time.Millisecond))
	n := int(counter(t, reg, "qfetch_worker_dead_letter_failures_total", nil))
	if n < 3 || n > 3+waits {
		t.Fatalf("%d dead-letter failures counted, want 3, plus at most one per 1.6s wait since the wedge (%d)", n, waits)
	}
	if dl := e.deadLetters()[0]; dl.Deliveries != uint64(n+1) {
		t.Fatalf("the message was delivered %d times, want %d (%d failed tries, then the one after the wait)", dl.Deliveries, n+1, n)
	}
	if g := gauge(t, reg, "qfetch_worker_wedged"); g != 0 {
		t.Fatalf("qfetch_worker_wedged = %v after recovery", g)
	}
}

// natsDown is a queue whose dead-lettering and consumer info fail, as when
// NATS is unreachable: a fleet-wide fault, which is no wedge (I6).
type natsDown struct {
	fetch.Queue
	deadLetters atomic.Int32
}

func (q *natsDown) DeadLetter(context.Context, jetstream.Msg, string, error) error {
	q.deadLetters.Add(1)
	return failure.Retryable(errors.New("nats: timeout"))
}

func (q *natsDown) InFlight(context.Context) (int, int, error) {
	return 0, 0, failure.Retryable(errors.New("nats: timeout"))
}

func TestDeadLetterFailureWithNATSDownIsNoWedge(t *testing.T) {
	e := setup(t, opts{hosts: 100, batchSize: 100})
	e.publishRaw([]byte("not a batch"))
	p := e.parts(e.r.NewClient(e.sim.Password()))
	q := &natsDown{Queue: p.Queue.Queue}
	reg := prometheus.NewRegistry()
	w := fetch.New(fetch.Config{Slots: 1, ProbeEvery: 50 * time.Millisecond, PullWait: 200 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
		fetch.Deps{Queue: q, Ledger: p.Queue.Ledger, Fleet: p.Queue.Ledger.Fleet("w"),
			Publisher: func() fetch.Publisher { return p.Queue.Publisher(msg.PublisherOptions{}) },
			API:       p.Qualys, Store: p.Store, Finish: p.Finish, Metrics: fetch.NewMetrics(reg), Log: p.Log})
	stop := e.start(w)
	testenv.Eventually(t, 30*time.Second, func() bool { return q.deadLetters.Load() >= 2*3 },
		"the message does not come back while NATS is down")
	stop()
	if err := w.Ready(); errors.Is(err, fetch.ErrWedged) {
		t.Fatalf("NATS down wedged the worker: %v", err)
	}
	if n := counter(t, reg, "qfetch_worker_dead_letter_failures_total", nil); n != 0 {
		t.Fatalf("%v dead-letter failures counted while NATS was down", n)
	}
}
