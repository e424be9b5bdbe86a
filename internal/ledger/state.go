package ledger

import "time"

// RunState is where a run is in its life: the one vocabulary of run states
// that records, status.json, metrics and operator commands share.
type RunState string

// Run states. A run record is planning while the planner pages (workers
// fetch at the same time), fetching once every batch is published,
// completing while a finisher writes the manifest, then complete or failed.
//
// Stale and accepted-incomplete are never written to a record: [Classify]
// refines the record's state with what only the queue knows. Failed then
// also covers a run whose last batches are dead-lettered (nothing queued,
// not complete): either way an operator must act. Stale is a run still open
// after its stale age.
const (
	RunPlanning           RunState = "planning"
	RunFetching           RunState = "fetching"
	RunCompleting         RunState = "completing"
	RunComplete           RunState = "complete"
	RunFailed             RunState = "failed"
	RunStale              RunState = "stale"
	RunAcceptedIncomplete RunState = "accepted-incomplete"
)

// States lists every RunState, in the order a run goes through them.
var States = []RunState{RunPlanning, RunFetching, RunCompleting, RunComplete, RunFailed, RunStale, RunAcceptedIncomplete}

// Terminal reports whether nothing more happens to a run in s without an
// operator.
func (s RunState) Terminal() bool {
	return s == RunComplete || s == RunFailed || s == RunAcceptedIncomplete
}

// DefaultStaleAfter matches the "no complete run in 26 h" alert: a daily
// run still open after a day and two hours is late.
const DefaultStaleAfter = 26 * time.Hour

// Classify refines rec's state with what only the queue knows: how many of
// its batches are queued and how many are dead-lettered. A run opened more
// than staleAfter before now and still open is stale.
func Classify(rec RunRecord, queued uint64, deadLetters int, now time.Time, staleAfter time.Duration) RunState {
	switch rec.State {
	case RunComplete, RunFailed:
		return rec.State
	}
	if queued == 0 && rec.PlanningComplete && rec.State != RunCompleting {
		switch {
		case deadLetters > 0:
			return RunFailed
		case rec.Accepted != nil:
			return RunAcceptedIncomplete
		}
	}
	if now.Sub(rec.Created) > staleAfter {
		return RunStale
	}
	switch rec.State {
	case RunPlanning, RunCompleting:
		return rec.State
	default:
		return RunFetching
	}
}
