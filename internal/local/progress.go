package local

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/runstat"
)

// progress shows a run's progress: one rewritten line on a terminal,
// periodic log lines otherwise.
type progress struct {
	w     io.Writer
	log   *slog.Logger
	start time.Time
	shown bool
}

func (p *progress) show(rec ledger.RunRecord, done int, bytes int64) {
	planned := rec.Progress.Batches
	total := "?"
	if rec.PlanningComplete {
		planned = rec.BatchesPlanned
		total = fmt.Sprint(planned)
	}
	elapsed := time.Since(p.start)
	eta := "-"
	if rec.PlanningComplete && done > 0 && done < planned {
		eta = (time.Duration(float64(elapsed) / float64(done) * float64(planned-done))).Round(time.Second).String()
	}
	rate := int64(float64(bytes) / max(elapsed.Seconds(), 0.001))
	if p.w == nil {
		p.log.Info("progress", "run", rec.ID, "state", string(rec.State), "batches_done", done,
			"batches_planned", planned, "planning_complete", rec.PlanningComplete, "bytes", bytes,
			"elapsed", elapsed.Round(time.Second).String())
		return
	}
	p.shown = true
	fmt.Fprintf(p.w, "\r\033[K%s  %-9s batches %d/%s  hosts planned %d  %s  %s/s  elapsed %s  eta %s",
		rec.ID, rec.State, done, total, rec.Progress.End.Hosts, runstat.Bytes(bytes), runstat.Bytes(rate), elapsed.Round(time.Second), eta)
}

func (p *progress) end() {
	if p.shown {
		fmt.Fprintln(p.w)
	}
}
