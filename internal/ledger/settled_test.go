package ledger

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/msg"
)

// TestSetupLeavesSettledBucketsAlone: a planner pass over buckets (and
// streams) already at qfetch's settings updates no stream. Each update used to turn direct
// gets (and, on the run records and watermark, roll-ups) back on for a
// moment, every pass. A bucket an operator changed is still brought back,
// with both off again.
func TestSetupLeavesSettledBucketsAlone(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	if _, err := msg.Setup(e.Ctx, e.JS, msg.Config{}); err != nil {
		t.Fatal(err)
	}
	nc := e.JS.Conn()
	updates := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.STREAM.UPDATED.>", updates)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const sentinel = "SENTINEL"
	sc := jetstream.StreamConfig{Name: sentinel, Subjects: []string{"sentinel.>"}}
	if _, err := e.JS.CreateStream(e.Ctx, sc); err != nil {
		t.Fatal(err)
	}
	// updated returns the streams updated until the sentinel's update,
	// which the server advises after every earlier one.
	updated := func() []string {
		t.Helper()
		sc.Description = time.Now().String()
		if _, err := e.JS.UpdateStream(e.Ctx, sc); err != nil {
			t.Fatal(err)
		}
		var names []string
		for {
			select {
			case m := <-updates:
				name := m.Subject[strings.LastIndex(m.Subject, ".")+1:]
				if name == sentinel {
					return names
				}
				names = append(names, name)
			case <-e.Ctx.Done():
				t.Fatal("no advisory for the sentinel's update")
			}
		}
	}

	for range 2 {
		if _, err := msg.Setup(e.Ctx, e.JS, msg.Config{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := updated(); len(got) != 0 {
		t.Fatalf("two passes over settled buckets updated %v", got)
	}

	kv := "KV_" + BucketRuns
	s, err := e.JS.Stream(e.Ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	changed := s.CachedInfo().Config
	changed.Description = "changed by an operator"
	if _, err := e.JS.UpdateStream(e.Ctx, changed); err != nil {
		t.Fatal(err)
	}
	// qfetch check says so, and what the next planner does about it.
	problems := func() map[string]bool {
		t.Helper()
		findings, err := Inspect(e.Ctx, e.JS, Config{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, f := range findings {
			if f.Problem != "" {
				out[f.Object] = f.Fatal
			}
		}
		return out
	}
	if got := problems(); len(got) != 1 || got["bucket "+BucketRuns] {
		t.Fatalf("findings after an operator's change: %v, want one, not fatal, for %s", got, BucketRuns)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
		t.Fatal(err)
	}
	if got := problems(); len(got) != 0 {
		t.Fatalf("findings after the planner's pass: %v", got)
	}
	if got := updated(); len(got) == 0 || got[0] != kv {
		t.Fatalf("streams updated after an operator's change: %v, want %s first", got, kv)
	}
	s, err = e.JS.Stream(e.Ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	if c := s.CachedInfo().Config; c.Description == changed.Description || c.AllowDirect || c.AllowRollup {
		t.Fatalf("%s after the pass: description %q, direct gets %v, roll-ups %v", kv, c.Description, c.AllowDirect, c.AllowRollup)
	}
}
