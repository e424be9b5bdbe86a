package main

import (
	"context"
	"fmt"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
)

// benchRun is a run the harness plans itself: a run record and its batches,
// as a planner would leave them, for the workers under test to fetch.
type benchRun struct {
	id      string
	before  time.Time
	batches [][]uint64
}

// openRun records a run of batches as planned and fetching.
func openRun(ctx context.Context, q app.JetStream, tag string, batches [][]uint64) (benchRun, error) {
	r := benchRun{id: runID(tag), before: time.Now().UTC().Truncate(time.Second), batches: batches}
	hosts := 0
	for _, b := range batches {
		hosts += len(b)
	}
	_, err := q.CreateRun(ctx, ledger.RunRecord{
		ID: r.id, Before: r.before, State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: len(batches), HostsPlanned: hosts,
	})
	return r, err
}

// publishAndWait publishes the run's batches and waits, at most limit,
// until the run is complete. It returns the wall time from the first publish
// to complete, and fails early when one of workers exits or the run fails.
func (r benchRun) publishAndWait(ctx context.Context, q app.JetStream, workers []*proc, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	pub := q.Publisher(msg.PublisherOptions{})
	for i, b := range r.batches {
		if err := pub.Publish(ctx, msg.Batch{Run: r.id, Number: i + 1, Before: r.before, IDs: hostids.Of(b).String(), Hosts: len(b)}); err != nil {
			return 0, err
		}
	}
	if err := pub.Wait(ctx); err != nil {
		return 0, err
	}
	err := poll(ctx, limit, 25*time.Millisecond, func() (bool, error) {
		for _, w := range workers {
			if w.exited() {
				return false, fmt.Errorf("%s exited", w.name)
			}
		}
		rec, err := q.GetRun(ctx, r.id)
		if err != nil {
			return false, err
		}
		if rec.State == ledger.RunFailed {
			return false, fmt.Errorf("run failed: %s", rec.Error)
		}
		return rec.State == ledger.RunComplete, nil
	})
	return time.Since(start), err
}
