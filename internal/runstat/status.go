// Package runstat says where qfetch's runs are, for operators: one run's
// status, the run-level metrics alerts use, and runs/<run>/status.json.
//
// It reads what planners and workers record in JetStream and changes none
// of it.
package runstat

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/runid"
)

// Queue is what status is read from.
type Queue interface {
	RunIDs(ctx context.Context) ([]string, error)
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	DoneBatches(ctx context.Context, run string) ([]ledger.BatchResult, error)
	Splits(ctx context.Context, run string) ([]ledger.Split, error)
	Failures(ctx context.Context, run string) (map[string]int, error)
	Pending(ctx context.Context, run string) (uint64, error)
	DeadLetterCount(ctx context.Context, run string) (int, error)
	// CountDrained is how many of run's queued batches were acknowledged
	// without a call because the run had failed or was dropped.
	CountDrained(ctx context.Context, run string) (int, error)
}

// Config is how status is judged.
type Config struct {
	StaleAfter time.Duration // default ledger.DefaultStaleAfter
	Now        func() time.Time
}

func (c Config) withDefaults() Config {
	if c.StaleAfter <= 0 {
		c.StaleAfter = ledger.DefaultStaleAfter
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Status is one run as `qfetch status` shows it and status.json holds it.
type Status struct {
	Run string `json:"run"`
	// Kind is "kb" for a KnowledgeBase pass, whose hosts_* figures count
	// QIDs; empty for a detection run.
	Kind string `json:"kind,omitempty"`
	// State is the record's state refined by the queue ([ledger.Classify]).
	State       ledger.RunState `json:"state"`
	RecordState ledger.RunState `json:"record_state"`
	After       time.Time       `json:"after"`
	Before      time.Time       `json:"before"`
	Created     time.Time       `json:"created"`
	Updated     time.Time       `json:"updated"`
	Completed   time.Time       `json:"completed,omitzero"`
	AgeSeconds  float64         `json:"age_seconds"`

	// BatchesPlanned grows while the run is planning; PlanningComplete
	// says it is final.
	PlanningComplete bool   `json:"planning_complete"`
	BatchesPlanned   int    `json:"batches_planned"`
	BatchesDone      int    `json:"batches_done"`
	BatchesQueued    uint64 `json:"batches_queued"`
	Splits           int    `json:"splits"`
	HostsPlanned     int    `json:"hosts_planned"`
	HostsRequested   int    `json:"hosts_requested"`
	HostsReturned    int    `json:"hosts_returned"`
	Bytes            int64  `json:"bytes"`
	// Retries are the retryable failures charged to the run's batches
	// (back-pressure waits are not failures and not counted).
	Retries     int `json:"retries"`
	DeadLetters int `json:"dead_letters"`
	// Drained are the run's batches acknowledged without a call after it
	// failed or was dropped, so that the next run's came first.
	Drained int `json:"batches_drained"`
	// Lost are planned batches neither done, queued nor dead-lettered: the
	// queue lost them (see [Lost]); the run is then failed.
	Lost int `json:"batches_lost,omitempty"`

	// BytesPerSecond and ETASeconds are averages since the run opened;
	// ETASeconds is set only while batches remain.
	BytesPerSecond float64 `json:"bytes_per_second"`
	ETASeconds     float64 `json:"eta_seconds,omitempty"`

	Manifest string             `json:"manifest,omitempty"`
	Error    string             `json:"error,omitempty"`
	Accepted *ledger.Acceptance `json:"accepted_incomplete,omitempty"`
	// Action says what an operator should do, when anything.
	Action string `json:"action,omitempty"`

	At time.Time `json:"at"`
}

// Of returns run's status. It lists the run's batch results unless the run
// completed (its record then holds the totals).
func Of(ctx context.Context, q Queue, cfg Config, rec ledger.RunRecord) (Status, error) {
	cfg = cfg.withDefaults()
	now := cfg.Now().UTC()
	s := Status{Run: rec.ID, Kind: kindOf(rec.ID), RecordState: rec.State, After: rec.After, Before: rec.Before,
		Created: rec.Created, Updated: rec.Updated, Completed: rec.Completed,
		AgeSeconds: now.Sub(rec.Created).Seconds(), PlanningComplete: rec.PlanningComplete,
		BatchesPlanned: rec.BatchesPlanned, HostsPlanned: rec.HostsPlanned,
		Manifest: rec.ManifestKey, Error: rec.Error, Accepted: rec.Accepted, At: now}
	if !rec.PlanningComplete {
		s.BatchesPlanned = rec.Progress.Batches
		s.HostsPlanned = rec.Progress.Start.Hosts
	}
	var err error
	if s.BatchesQueued, err = q.Pending(ctx, rec.ID); err != nil {
		return s, fmt.Errorf("status of %s: %w", rec.ID, err)
	}
	if s.DeadLetters, err = q.DeadLetterCount(ctx, rec.ID); err != nil {
		return s, fmt.Errorf("status of %s: %w", rec.ID, err)
	}
	if s.Drained, err = q.CountDrained(ctx, rec.ID); err != nil {
		return s, fmt.Errorf("status of %s: %w", rec.ID, err)
	}
	fails, err := q.Failures(ctx, rec.ID)
	if err != nil {
		return s, fmt.Errorf("status of %s: %w", rec.ID, err)
	}
	for _, n := range fails {
		s.Retries += n
	}
	splits, err := q.Splits(ctx, rec.ID)
	if err != nil {
		return s, fmt.Errorf("status of %s: %w", rec.ID, err)
	}
	s.Splits = len(splits)

	var lastAt time.Time
	if t := rec.Totals; rec.State == ledger.RunComplete && t != nil {
		s.BatchesDone = rec.BatchesPlanned
		s.HostsRequested, s.HostsReturned, s.Bytes = t.HostsRequested, t.HostsReturned, t.Bytes
		lastAt = rec.Completed
	} else {
		results, err := q.DoneBatches(ctx, rec.ID)
		if err != nil {
			return s, fmt.Errorf("status of %s: %w", rec.ID, err)
		}
		// Counted as completion counts them: a split batch is done when
		// both halves are.
		var counted []ledger.BatchResult
		s.BatchesDone, counted = ledger.Progress(s.BatchesPlanned, results, splits)
		for _, r := range counted {
			s.HostsRequested += r.HostsRequested
			s.HostsReturned += r.HostsReturned
			s.Bytes += r.Bytes()
			lastAt = later(lastAt, r.At)
		}
	}
	if elapsed := lastAt.Sub(rec.Created).Seconds(); elapsed > 0 {
		s.BytesPerSecond = float64(s.Bytes) / elapsed
	}
	s.State = ledger.Classify(rec, s.BatchesQueued, s.DeadLetters, now, cfg.StaleAfter)
	if s.Lost = lost(rec, s.BatchesQueued, s.DeadLetters, s.BatchesDone); s.Lost > 0 {
		s.State = ledger.RunFailed
	}
	if left := s.BatchesPlanned - s.BatchesDone; !s.State.Terminal() && s.BatchesDone > 0 && left > 0 {
		s.ETASeconds = now.Sub(rec.Created).Seconds() / float64(s.BatchesDone) * float64(left)
	}
	s.Action = action(s)
	return s, nil
}

// lost is how many of rec's planned batches the queue lost: its planning
// is over, nothing of it is queued, in flight, waiting or dead-lettered, and
// yet done covers fewer than planned. Until then the run reads as fetching
// (and after a day stale), which hid a purged queue. done must be read
// after queued: a batch is recorded done before it leaves the queue, so the
// two never miss a batch between them.
func lost(rec ledger.RunRecord, queued uint64, deadLetters, done int) int {
	if rec.State != ledger.RunFetching || !rec.PlanningComplete || rec.Accepted != nil ||
		queued > 0 || deadLetters > 0 || done >= rec.BatchesPlanned {
		return 0
	}
	return rec.BatchesPlanned - done
}

// Lost counts rec's lost batches (see [Status.Lost]) from the queue alone,
// listing its batch results only when nothing of it is queued or
// dead-lettered.
func Lost(ctx context.Context, q Queue, rec ledger.RunRecord, queued uint64, deadLetters int) (int, error) {
	if lost(rec, queued, deadLetters, 0) == 0 {
		return 0, nil
	}
	results, err := q.DoneBatches(ctx, rec.ID)
	if err != nil {
		return 0, fmt.Errorf("lost batches of %s: %w", rec.ID, err)
	}
	splits, err := q.Splits(ctx, rec.ID)
	if err != nil {
		return 0, fmt.Errorf("lost batches of %s: %w", rec.ID, err)
	}
	done, _ := ledger.Progress(rec.BatchesPlanned, results, splits)
	return lost(rec, queued, deadLetters, done), nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func action(s Status) string {
	switch {
	case s.State == ledger.RunFailed && s.DeadLetters > 0:
		return fmt.Sprintf("%s dead-lettered: see `qfetch dlq list --run %s`, fix the cause, then `qfetch dlq replay --run %s` (or `qfetch dlq drop --run %s --yes` to accept the run as incomplete)",
			Count(s.DeadLetters, "batch", "batches"), s.Run, s.Run, s.Run)
	case s.State == ledger.RunFailed && s.Lost > 0:
		return fmt.Sprintf("%s left the queue unfetched and undead-lettered: the queue was purged or its messages deleted "+
			"(a Nats-Rollup header from a credential that may publish batches, or an operator; see README \"Security\"); "+
			"nothing can bring them back, the watermark stays, and the next run asks for this window again; "+
			"find who purged QFETCH_BATCHES and rotate that credential",
			Count(s.Lost, "batch", "batches"))
	case s.State == ledger.RunFailed:
		return "planning failed (see error); the next planner run opens a new run from the watermark"
	case s.State == ledger.RunStale && s.BatchesQueued > 0:
		return "batches are still queued long after the run opened: are workers running and healthy (qfetch check)?"
	case s.State == ledger.RunStale:
		return "the run is still open long after it started: is its planner running (qfetch check)?"
	case s.State == ledger.RunAcceptedIncomplete:
		return "accepted as incomplete; the next run asks for its hosts again"
	}
	return ""
}

// Recent returns the status of up to n runs, newest first.
func Recent(ctx context.Context, q Queue, cfg Config, n int) ([]Status, error) {
	ids, err := q.RunIDs(ctx)
	if err != nil {
		return nil, err
	}
	ids = slices.DeleteFunc(ids, runid.IsKB)
	var out []Status
	for i := len(ids) - 1; i >= 0 && len(out) < n; i-- {
		rec, err := q.GetRun(ctx, ids[i])
		if err != nil {
			return out, err
		}
		s, err := Of(ctx, q, cfg, rec)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}
