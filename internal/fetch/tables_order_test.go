package fetch_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// dyingLedger is a finisher's ledger that dies as it marks a run complete:
// the run is sealed (_SUCCESS is there) and its record never says so.
type dyingLedger struct {
	finish.Ledger
	died *atomic.Bool
}

func (l dyingLedger) UpdateRun(ctx context.Context, id string, change func(*ledger.RunRecord) error) (ledger.RunRecord, error) {
	return l.Ledger.UpdateRun(ctx, id, func(r *ledger.RunRecord) error {
		probe := *r
		if err := change(&probe); err != nil {
			return err
		}
		if probe.State == ledger.RunComplete && r.State != ledger.RunComplete {
			l.died.Store(true)
			return errors.New("test: the finisher died marking the run complete")
		}
		return change(r)
	})
}

// A finisher that dies between sealing a run and marking it complete has
// queued the run's table conversions already (the Host List pages are final
// once _SUCCESS is there), so the tables complete without anyone calling
// rebuild; before, the pages were queued after the mark and such a death
// left the tables incomplete for good.
func TestTablesQueuedBeforeTheRunIsMarkedComplete(t *testing.T) {
	e := setupTables(t, 120)
	e.loop(e.process(e.Store), 2, 5)
	out := e.Plan()
	p := e.Parts("dying")
	var died atomic.Bool
	p.Finish = finish.New(finish.Config{Prefix: testrun.Prefix, Owner: "dying", Tables: p.TableBuilder()},
		dyingLedger{e.Q.Ledger, &died}, e.Store, e.Log)
	e.WorkWith(p, died.Load)
	if _, err := e.Store.Stat(t.Context(), objstore.SuccessKey(testrun.Prefix, out.Run)); err != nil {
		t.Fatalf("the run is not sealed: %v", err)
	}
	if rec := e.Record(out.Run); rec.State == ledger.RunComplete {
		t.Fatalf("the run was marked complete: the dying finisher did not die")
	}
	testenv.Eventually(t, 60*time.Second, e.tablesComplete(e.Store, out.Run), "the run's tables did not complete")
	checkTables(t, e, e.Store, out.Run)
}
