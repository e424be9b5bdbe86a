package ops_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/runstat"
)

// passLedger is the ledger with its KnowledgeBase pass list; a build whose
// ledger.KBPassIDs is not there yet finds the passes among the records.
type passLedger struct{ app.JetStream }

func (q passLedger) KBPassIDs(ctx context.Context) ([]string, error) {
	if ids, err := q.JetStream.KBPassIDs(ctx); err == nil {
		return ids, nil
	}
	ids, err := q.JetStream.RunIDs(ctx)
	return slices.DeleteFunc(ids, func(id string) bool { return !runid.IsKB(id) }), err
}

// deadLetterKB records a KnowledgeBase pass with one batch, and
// dead-letters that batch as a worker would.
func (e *env) deadLetterKB(pass string) {
	e.T.Helper()
	ctx := e.T.Context()
	pub := e.Q.Publisher(msg.PublisherOptions{})
	if err := pub.Publish(ctx, msg.Batch{Kind: msg.KindKB, Run: pass, Number: 1, Before: time.Now().UTC().Truncate(time.Second),
		IDs: hostids.Of([]uint64{11, 12, 13}).String(), Hosts: 3}); err != nil {
		e.T.Fatal(err)
	}
	if err := pub.Wait(ctx); err != nil {
		e.T.Fatal(err)
	}
	m, err := e.Q.Queue.Next(ctx, 5*time.Second)
	if err != nil || m == nil {
		e.T.Fatalf("pulling the KB batch: %v", err)
	}
	if err := e.Q.Queue.DeadLetter(ctx, m, "test: refused", failure.Permanent(errors.New("refused"))); err != nil {
		e.T.Fatal(err)
	}
}

// TestKBPassOperatorCommands: status, dlq replay and dlq drop take a
// KnowledgeBase pass as they take a run; `qfetch status` without a run
// shows the newest run and a line on the newest pass.
func TestKBPassOperatorCommands(t *testing.T) {
	e := setup(t, 300)
	ctx := t.Context()
	const pass = "kb-20260102T000000Z-bbbbbb"
	run := e.Plan().Run
	e.Work(e.Complete(run))
	if _, err := e.Q.CreateRun(ctx, ledger.RunRecord{ID: pass, Before: time.Now().UTC(), State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: 1, HostsPlanned: 3}); err != nil {
		t.Fatal(err)
	}
	e.deadLetterKB(pass)
	q := passLedger{e.Q}

	var buf bytes.Buffer
	if err := ops.Status(ctx, q, runstat.Config{}, pass, false, time.Second, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "KnowledgeBase pass") || !strings.Contains(out, "qids:") || !strings.Contains(out, "dead letters:  1") {
		t.Errorf("status of the pass:\n%s", out)
	}
	buf.Reset()
	if err := ops.Status(ctx, q, runstat.Config{}, "", false, time.Second, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	if out := buf.String(); !strings.Contains(out, "run:           "+run) || !strings.Contains(out, "knowledgebase: "+pass+" ") {
		t.Errorf("status of the newest run and pass:\n%s", out)
	}
	if id, err := ops.NewestKBPass(ctx, q); err != nil || id != pass {
		t.Errorf("newest pass %q (%v)", id, err)
	}

	if dls := e.deadLetters(pass); len(dls) != 1 || dls[0].Run != pass {
		t.Fatalf("dead letters of the pass: %+v", dls)
	}
	if err := ops.DLQReplay(ctx, e.Q, ops.Selection{Run: pass}, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.Q.Pending(ctx, pass); err != nil || n != 1 || len(e.deadLetters(pass)) != 0 {
		t.Fatalf("after the replay: %d queued (%v), %d dead letters", n, err, len(e.deadLetters(pass)))
	}
	m, err := e.Q.Queue.Next(ctx, 5*time.Second)
	if err != nil || m == nil {
		t.Fatalf("pulling the replayed batch: %v", err)
	}
	if b, err := msg.Decode(m.Data()); err != nil || b.Kind != msg.KindKB || b.Run != pass {
		t.Fatalf("replayed batch %+v (%v)", b, err)
	}
	if err := e.Q.Queue.DeadLetter(ctx, m, "test: refused again", failure.Permanent(errors.New("refused"))); err != nil {
		t.Fatal(err)
	}
	if err := ops.DLQDrop(ctx, e.Q, ops.Selection{Run: pass}, "alice@ops", "QIDs withdrawn", true, ops.Output{W: &buf}); err != nil {
		t.Fatal(err)
	}
	if rec := e.Record(pass); rec.Accepted == nil || rec.Accepted.By != "alice@ops" {
		t.Fatalf("the pass is not accepted as incomplete: %+v", rec.Accepted)
	}
}
