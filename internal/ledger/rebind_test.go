package ledger

import (
	"context"
	"testing"

	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/testenv"
)

// A worker or an operator command that binds to the buckets while direct
// gets are on (a bucket an earlier version made, before a planner's set-up
// turns them off) still reads once they are off: every Get would
// otherwise find no responder until the process restarted, as a worker in
// the e2e did (its run status never refreshed).
func TestReadsAfterDirectGetsTurnOffUnderTheBinding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		bind func(e *env) (*Ledger, error)
	}{
		{"a worker's Setup", func(e *env) (*Ledger, error) { return Setup(e.Ctx, e.JS, Config{KeepBuckets: true}) }},
		{"an operator's Open", func(e *env) (*Ledger, error) { return Open(e.Ctx, e.JS) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, Config{})
			id := runid.New(testBefore)
			if _, err := e.l.CreateRun(e.Ctx, RunRecord{ID: id, After: testAfter, Before: testBefore, State: RunPlanning}); err != nil {
				t.Fatal(err)
			}
			setDirect(t, e, true)
			// A connection of its own, as another process has.
			other := &env{JetStream: e.JetStream}
			other.JS = testenv.Connect(t, e.URL)
			l, err := tc.bind(other)
			if err != nil {
				t.Fatal(err)
			}
			setDirect(t, e, false)
			if r, err := l.GetRun(e.Ctx, id); err != nil || r.ID != id {
				t.Fatalf("GetRun after direct gets went off under the binding: run %q, %v", r.ID, err)
			}
			if _, err := l.Fleet("test").State(e.Ctx); err != nil {
				t.Fatalf("the fleet's state after direct gets went off under the binding: %v", err)
			}
		})
	}
}

// setDirect turns direct gets on or off on every bucket's stream, as a
// planner's set-up does.
func setDirect(t *testing.T, e *env, on bool) {
	t.Helper()
	for _, c := range wanted(Config{}) {
		s, err := e.JS.Stream(e.Ctx, "KV_"+c.Bucket)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.AllowDirect = on
		if _, err := e.JS.UpdateStream(context.WithoutCancel(e.Ctx), cfg); err != nil {
			t.Fatal(err)
		}
	}
}
