package runstat

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/runid"
)

// A KnowledgeBase pass is a run whose ID says so (runid.IsKB): its status
// is a run's, its status.json is under kb/<pass>/, and its series are
// apart from the runs', so that the runs' alerts never meet a pass.

// Passes lists the KnowledgeBase passes (ledger.KBPassIDs), ascending;
// the run lists leave them out.
type Passes interface {
	KBPassIDs(ctx context.Context) ([]string, error)
}

// KindKB is Status.Kind of a KnowledgeBase pass.
const KindKB = "kb"

func kindOf(id string) string {
	if runid.IsKB(id) {
		return KindKB
	}
	return ""
}

// kbBatchStates are the label values of qfetch_kb_pass_batches.
var kbBatchStates = []string{"planned", "done", "queued", "dead_lettered"}

func (m *Metrics) newKBMetrics() {
	m.kbLastComplete = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_kb_last_complete_timestamp_seconds",
		Help: "Unix time the newest complete KnowledgeBase pass completed; absent until one has.",
	}, nil)
	m.kbPasses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_kb_passes",
		Help: "The 10 newest KnowledgeBase passes by state.",
	}, []string{"state"})
	for _, s := range ledger.States {
		m.kbPasses.WithLabelValues(string(s))
	}
	m.kbBatches = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "qfetch_kb_pass_batches",
		Help: "The newest KnowledgeBase pass's batches: planned, done, queued, dead_lettered; absent until a pass exists.",
	}, []string{"state"})
}

// refreshKB sets the KnowledgeBase series from the passes, as Refresh does
// the runs' (the lost batches of recent passes count with the runs'), and
// returns the passes whose status.json is due (open ones, and ones whose
// end this process has not written) and the recent ones, newest first.
func (r *Reporter) refreshKB(ctx context.Context, now time.Time) (open, recent []string, err error) {
	ids, err := r.q.KBPassIDs(ctx)
	if err != nil {
		return nil, nil, err
	}
	m := r.metrics
	counts := map[ledger.RunState]int{}
	var lastComplete time.Time
	var newest *ledger.RunRecord
	for i := len(ids) - 1; i >= 0; i-- {
		isRecent := len(ids)-1-i < recentRuns
		if !isRecent && !lastComplete.IsZero() {
			break
		}
		rec, err := r.q.GetRun(ctx, ids[i])
		if err != nil {
			return nil, nil, err
		}
		if rec.State == ledger.RunComplete && lastComplete.IsZero() {
			lastComplete = rec.Completed
		}
		if !isRecent {
			continue
		}
		if newest == nil {
			newest = &rec
		}
		st, err := r.quickState(ctx, rec, now)
		if err != nil {
			return nil, nil, err
		}
		counts[st]++
		recent = append(recent, rec.ID)
		if !st.Terminal() || r.written[rec.ID].state != st {
			open = append(open, rec.ID)
		}
	}
	for _, s := range ledger.States {
		m.kbPasses.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	if !lastComplete.IsZero() {
		m.kbLastComplete.WithLabelValues().Set(float64(lastComplete.UnixNano()) / 1e9)
	}
	if newest == nil {
		m.kbBatches.Reset()
		return open, recent, nil
	}
	s, err := Of(ctx, r.q, r.cfg, *newest)
	if err != nil {
		return nil, nil, err
	}
	for i, v := range []int{s.BatchesPlanned, s.BatchesDone, int(s.BatchesQueued), s.DeadLetters} {
		m.kbBatches.WithLabelValues(kbBatchStates[i]).Set(float64(v))
	}
	return open, recent, nil
}
