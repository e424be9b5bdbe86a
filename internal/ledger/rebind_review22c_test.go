package ledger

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// staleLedger binds a second process's Ledger while direct gets are on,
// and turns them off under it, as a planner's set-up does.
func staleLedger(t *testing.T, e *env) *Ledger {
	t.Helper()
	setDirect(t, e, true)
	other := &env{JetStream: e.JetStream}
	other.JS = testenv.Connect(t, e.URL)
	l, err := Open(e.Ctx, other.JS)
	if err != nil {
		t.Fatal(err)
	}
	setDirect(t, e, false)
	return l
}

// TestReview22cCreateOfADeletedKeyThroughAStaleBinding: rebinding says
// Create "reads a key it finds deleted" and is tried once more on a new
// binding. But nats.go's Create (v1.55.0 kv.go) swallows the error of that
// read: its first write fails on the delete marker (wrong last sequence),
// the direct get finds no responder, and Create returns the write's error
// wrapped as ErrKeyExists, never nats.ErrNoResponders. So the retry never
// fires, and a process bound in the planner's window is told that a
// deleted key exists: a create-if-absent (a claim, a table part, a lock,
// the fleet's probe claim) reads as lost to someone else. Today's callers
// happen to read the key first (which rebinds) or try twice; the wrapper
// itself does not do what it says.
func TestReview22cCreateOfADeletedKeyThroughAStaleBinding(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const key = "review22c.deleted"
	if _, err := e.l.runs.Put(e.Ctx, key, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := e.l.runs.Delete(e.Ctx, key); err != nil {
		t.Fatal(err)
	}
	l := staleLedger(t, e)
	if _, err := l.runs.Create(e.Ctx, key, []byte("again")); err != nil {
		t.Fatalf("Create of a deleted key through a binding made while direct gets were on: %v (ErrKeyExists: %t)",
			err, errors.Is(err, jetstream.ErrKeyExists))
	}
}

// TestReview22cManyReadersRebindAtOnce: the goroutines of a worker that
// bound in the window all find no responder at once; each binds again, and
// every read succeeds (run with -race).
func TestReview22cManyReadersRebindAtOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	for i := range 8 {
		if _, err := e.l.runs.Put(e.Ctx, fmt.Sprintf("review22c.k%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	l := staleLedger(t, e)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 32 {
		wg.Go(func() {
			if _, err := l.runs.Get(e.Ctx, fmt.Sprintf("review22c.k%d", g%8)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a concurrent Get after direct gets went off: %v", err)
	}
	// Watches and key listings go through the current binding.
	keys, err := l.runs.Keys(e.Ctx)
	if err != nil || len(keys) != 8 {
		t.Fatalf("Keys: %d keys, %v", len(keys), err)
	}
}
