package msg

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// What the pinned nats-server does with roll-ups and message schedules:
// why QFETCH_BATCHES still allows roll-ups (README "Security", known gap),
// and what a queue without them could be built on. Should an upgrade of
// the server change any of it, this test says so.
func TestServerRollupsAndSchedules(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	s, err := e.JS.Stream(e.Ctx, StreamBatches)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	// Schedules keep roll-ups on: an update asking otherwise is turned back.
	c.AllowRollup = false
	if upd, err := e.JS.UpdateStream(e.Ctx, c); err == nil && !upd.CachedInfo().Config.AllowRollup {
		t.Errorf("the server turned roll-ups off on a stream with schedules")
	}
	// Schedules cannot be turned off again.
	c.AllowMsgSchedules = false
	if _, err := e.JS.UpdateStream(e.Ctx, c); err == nil {
		t.Errorf("the server turned schedules off")
	}
	// A stream with schedules takes no sources.
	c = s.CachedInfo().Config
	c.Sources = []*jetstream.StreamSource{{Name: StreamDLQ}}
	var apiErr *jetstream.APIError
	if _, err := e.JS.UpdateStream(e.Ctx, c); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeSourceWithMsgSchedules {
		t.Errorf("sources on a stream with schedules: %v", err)
	}

	// A stream of schedules sourced into a queue that refuses roll-ups: a
	// schedule made to produce a roll-up (Nats-Schedule-Rollup) reaches
	// the queue with the header, and the queue does not apply it.
	if _, err := e.JS.CreateStream(e.Ctx, jetstream.StreamConfig{Name: "T_SCHED", Subjects: []string{"t.sched.>", "t.due.>"},
		AllowMsgSchedules: true, AllowRollup: true, Discard: jetstream.DiscardOld}); err != nil {
		t.Fatal(err)
	}
	q, err := e.JS.CreateStream(e.Ctx, jetstream.StreamConfig{Name: "T_QUEUE", Subjects: []string{"t.q.>"},
		Retention: jetstream.WorkQueuePolicy, AllowRollup: false,
		Sources: []*jetstream.StreamSource{{Name: "T_SCHED",
			SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: "t.due.>", Destination: "t.q.>"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := e.JS.Publish(e.Ctx, "t.q.victim", []byte("batch")); err != nil {
			t.Fatal(err)
		}
	}
	m := nats.NewMsg("t.sched.1")
	m.Data = []byte("hostile")
	m.Header.Set(scheduleHeader, "@at "+time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(scheduleTargetHeader, "t.due.victim")
	m.Header.Set("Nats-Schedule-Rollup", "sub")
	if _, err := e.JS.PublishMsg(e.Ctx, m); err != nil {
		t.Fatal(err)
	}
	var got *jetstream.RawStreamMsg
	testenv.Eventually(t, 10*time.Second, func() bool {
		got, err = q.GetLastMsgForSubject(e.Ctx, "t.q.victim")
		return err == nil && string(got.Data) == "hostile"
	}, "the schedule's message never reached the queue")
	if got.Header.Get("Nats-Rollup") != "sub" {
		t.Errorf("the sourced message carries no roll-up (%v): this test no longer proves anything", got.Header)
	}
	info, err := q.Info(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 4 {
		t.Errorf("the queue holds %d messages, want 4: a sourced roll-up purged it", info.State.Msgs)
	}
}
