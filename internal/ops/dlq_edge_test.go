package ops_test

import (
	"bytes"
	"testing"

	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/runstat"
)

// TestGarbledDeadLetterBreaksRuns: one garbled record on one run's
// dead-letter subject and `qfetch runs`, `qfetch dlq list` (and every
// status.json and run gauge, via runstat.Of) fail for every run, and `dlq
// drop SEQ` cannot remove it (see msg's dlq_edge_test.go).
func TestGarbledDeadLetterBreaksRuns(t *testing.T) {
	e := setup(t, 300)
	ctx := t.Context()
	a := e.Plan()
	e.Work(e.Complete(a.Run))
	ack, err := e.JS.Publish(ctx, "qfetch.dlq."+a.Run, []byte("{truncated"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ops.Runs(ctx, e.Q, runstat.Config{}, 10, ops.Output{W: &buf}); err != nil {
		t.Errorf("qfetch runs fails for every run: %v", err)
	}
	buf.Reset()
	if err := ops.DLQList(ctx, e.Q, "", ops.Output{W: &buf}); err != nil {
		t.Errorf("qfetch dlq list fails: %v", err)
	}
	buf.Reset()
	if err := ops.DLQDrop(ctx, e.Q, ops.Selection{Seqs: []uint64{ack.Sequence}}, "op", "garbage", true, ops.Output{W: &buf}); err != nil {
		t.Errorf("qfetch dlq drop --yes %d: %v", ack.Sequence, err)
	}
}
