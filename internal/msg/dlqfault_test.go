package msg

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// TestCheckDeadLetters: a dead-letter stream that can take no record at all
// is a fleet-wide fault (ErrDeadLettersBroken); one that refuses only a
// large record is not.
func TestCheckDeadLetters(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		change func(*jetstream.StreamConfig)
		remove bool
		broken bool
	}{
		{name: "as set up"},
		{name: "missing", remove: true, broken: true},
		{name: "sealed", change: func(c *jetstream.StreamConfig) { c.Sealed = true }, broken: true},
		{name: "full", change: func(c *jetstream.StreamConfig) { c.MaxMsgs = 1 }, broken: true},
		{name: "small records only", change: func(c *jetstream.StreamConfig) { c.MaxMsgSize = 64 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, Config{})
			// One record in it, so that a limit of one is full.
			if _, err := e.JS.Publish(e.Ctx, dlqSubjectPrefix+"r1", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			s, err := e.JS.Stream(e.Ctx, StreamDLQ)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.remove:
				err = e.JS.DeleteStream(e.Ctx, StreamDLQ)
			case tt.change != nil:
				c := s.CachedInfo().Config
				tt.change(&c)
				_, err = e.JS.UpdateStream(e.Ctx, c)
			}
			if err != nil {
				t.Fatal(err)
			}
			err = e.q.CheckDeadLetters(e.Ctx)
			if got := errors.Is(err, ErrDeadLettersBroken); got != tt.broken {
				t.Fatalf("CheckDeadLetters: %v; want broken %v", err, tt.broken)
			}
			if tt.broken && failure.ClassOf(err) != failure.ClassFleetWide {
				t.Fatalf("class %s, want fleet-wide", failure.ClassOf(err))
			}
			findings, err := Inspect(e.Ctx, e.JS, Config{})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range findings {
				if f.Object == "stream "+StreamDLQ && f.Problem == "" && tt.broken {
					t.Errorf("qfetch check says of the broken stream: %q", f.Problem)
				}
			}
			if tt.broken {
				// What a worker meets: dead-lettering fails with it.
				publishAll(t, e, testBatch("r1", 1))
				m := fetchOne(t, e)
				if err := e.q.DeadLetter(e.Ctx, m, "test", nil); !errors.Is(err, ErrDeadLettersBroken) ||
					failure.ClassOf(err) != failure.ClassFleetWide {
					t.Fatalf("DeadLetter into a broken stream: %v", err)
				}
			}
		})
	}
}

// TestParkFreesTheSlot: a message that is no batch (undecodable) is taken
// off the queue with Park and holds no slot while it waits; it comes back
// on its subject with its body, and never replaces a batch's retry.
func TestParkFreesTheSlot(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{MaxInFlight: 1})
	if _, err := e.JS.Publish(e.Ctx, BatchSubject("r1"), []byte("not a batch")); err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, e)
	if err := e.q.Retry(e.Ctx, m, time.Now()); failure.ClassOf(err) != failure.ClassPermanent {
		t.Fatalf("Retry of a non-batch: %v", err)
	}
	if err := e.q.Park(e.Ctx, m, time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatalf("Park: %v", err)
	}
	if n := inFlight(t, e); n != 0 {
		t.Fatalf("NumAckPending %d right after Park, want 0", n)
	}
	if n := pending(t, e, "r1"); n != 0 {
		t.Errorf("a parked non-batch counts as r1's pending work: %d", n)
	}
	back := fetchOne(t, e)
	if string(back.Data()) != "not a batch" || back.Subject() != BatchSubject("r1") || Deliveries(back) != 2 {
		t.Fatalf("parked message came back as %q on %s, deliveries %d", back.Data(), back.Subject(), Deliveries(back))
	}
	// A batch is parked as Retry would.
	publishAll(t, e, testBatch("r2", 1))
	_ = back.Term()
	b := fetchOne(t, e)
	if err := e.q.Park(e.Ctx, b, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n := waiting(t, e, "r2"); n != 1 {
		t.Fatalf("Waiting(r2) = %d after parking its batch, want 1", n)
	}
}
