package fetch_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// TestReview22bPausedAtTheCapWithABatchParkRefuses: the stream's
// MaxMsgSize is an operator's setting; the planner publishes any batch up
// to it, but a retry schedule carries three headers more, which the
// server counts against the same limit. A real batch within those few
// bytes of the limit is stored, and can never be parked. When such a
// batch is the lost copy that holds a paused fleet's cap of one,
// freeCopy's Park fails; the message is a batch, so it is not
// dead-lettered but Nak'ed for a probe period, and the rescue stops. A
// period later the rescue pulls the same copy again, and again: the probe
// never runs and the fleet never resumes (I6: no batch wedges the queue;
// a delivery would at least have been charged until the dead letters).
func TestReview22bPausedAtTheCapWithABatchParkRefuses(t *testing.T) {
	d := &detectionCalls{}
	e := setupCalls(t, opts{hosts: 400, batchSize: 200, maxInFlight: 1, ackWait: 2 * time.Second}, d)
	ctx := t.Context()
	// A real batch of the run, its hosts written one by one (a run of
	// hosts whose IDs are not consecutive reads so): long enough for a
	// limit the config accepts.
	b := e.batch[0]
	set, err := hostids.Parse(b.IDs)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, id := range set.IDs() {
		ids = append(ids, strconv.FormatUint(id, 10))
	}
	b.IDs = strings.Join(ids, ",")
	data, err := msg.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := msg.Decode(data); err != nil {
		t.Fatal(err)
	}
	e.publishRaw(data)
	// A worker pulls the batches ahead of it and this one, and dies: its
	// copy holds the cap of one once AckWait is over.
	for {
		m, err := e.q.Next(ctx, 5*time.Second)
		if err != nil || m == nil {
			t.Fatalf("the lost worker's pull: %v, %v", m, err)
		}
		if string(m.Data()) == string(data) {
			break
		}
		if err := e.q.Retry(ctx, m, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// The operator's limit: this batch fits, a schedule of it does not.
	cfg := msg.Config{MaxInFlight: 1, AckWait: 2 * time.Second, MaxMsgSize: int32(len(data) + 16)}
	if _, err := msg.Setup(ctx, e.js, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fleet("test").Pause(ctx, ledger.PauseOutage, "test: an outage"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		owner := fmt.Sprintf("pod-%d", i)
		p := e.podParts(owner, "", 2*time.Second)
		js := testenv.Connect(t, e.r.NATSURL)
		mq, err := msg.Setup(ctx, js, cfg)
		if err != nil {
			t.Fatal(err)
		}
		p.Queue = app.JetStream{Queue: mq, Ledger: p.Queue.Ledger}
		p.Finish = testrun.NoFinish
		e.start(p.Worker(podConfig(fetch.Config{Slots: 1}), nil))
	}
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Log("at the end: " + last)
		}
	})
	testenv.Eventually(t, time.Minute, func() bool {
		st, done := e.fleetState(), e.done()
		pending, limit, _ := e.q.InFlight(ctx)
		_, probes := d.stats()
		last = fmt.Sprintf("%d of %d slots held, paused %v, %d probes, %d of %d batches done, %d dead letters, %d deliveries",
			pending, limit, st.Pause != nil, len(probes), done, len(e.batch), len(e.deadLetters()), delivered(t, e))
		return st.Pause == nil && len(probes) > 0
	}, "the fleet paused at its cap of one never probed: the batch holding the cap cannot be parked and is Nak'ed back into it every period")
	// The copy that no schedule can hold is dead-lettered, where a replay
	// brings it back once the limit is raised; the run's batches are
	// fetched from their own messages.
	testenv.Eventually(t, time.Minute, func() bool { return e.done() == len(e.batch) && len(e.deadLetters()) == 1 },
		"the batches fetched and the copy that cannot be parked dead-lettered")
	if dl := e.deadLetters()[0]; dl.Run != b.Run || dl.Subject != b.Subject() {
		t.Fatalf("dead letter of run %q on %q, want the copy of batch %s of %s", dl.Run, dl.Subject, b.Key(), b.Run)
	}
}
