package ops_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/ops"
)

// fakeDLQ holds one dead letter of a run in a given state; Replay records
// whether it was called.
type fakeDLQ struct {
	state    ledger.RunState
	replayed bool
}

func (f *fakeDLQ) DeadLetters(context.Context, string) ([]msg.DeadLetter, error) {
	return []msg.DeadLetter{{Seq: 4, Run: "r1", MsgID: "r1.3"}}, nil
}
func (f *fakeDLQ) DeadLetterAt(context.Context, uint64) (msg.DeadLetter, error) {
	return msg.DeadLetter{Seq: 4, Run: "r1", MsgID: "r1.3"}, nil
}
func (f *fakeDLQ) Replay(_ context.Context, _ uint64, before func(msg.Batch) error) (msg.Batch, error) {
	f.replayed = true
	b := msg.Batch{Run: "r1", Number: 3}
	return b, before(b)
}
func (f *fakeDLQ) DropDeadLetter(context.Context, uint64, func(msg.DeadLetter) error) (msg.DeadLetter, error) {
	return msg.DeadLetter{}, nil
}
func (f *fakeDLQ) ResetFailures(context.Context, string, string) error { return nil }
func (f *fakeDLQ) Accept(context.Context, string, string, string, string) (bool, error) {
	return false, nil
}
func (f *fakeDLQ) GetRun(context.Context, string) (ledger.RunRecord, error) {
	return ledger.RunRecord{ID: "r1", State: f.state}, nil
}

func TestReplayRefusesEndedRuns(t *testing.T) {
	for _, tc := range []struct {
		state  ledger.RunState
		refuse bool
	}{
		{ledger.RunFetching, false},
		{ledger.RunPlanning, false},
		{ledger.RunComplete, true},
		{ledger.RunFailed, true},
	} {
		f := &fakeDLQ{state: tc.state}
		var buf bytes.Buffer
		err := ops.DLQReplay(t.Context(), f, ops.Selection{Run: "r1"}, ops.Output{W: &buf})
		if refused := errors.Is(err, ops.ErrRunEnded); refused != tc.refuse || f.replayed == tc.refuse {
			t.Errorf("run %s: err %v, replayed %v; want refused %v", tc.state, err, f.replayed, tc.refuse)
		}
	}
}
