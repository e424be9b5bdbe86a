package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/runstat"
)

// DeadLetters is the dead-letter part of the queue and what the run ledger
// records about them: replay resets a batch's failure count, drop records
// the operator's acceptance.
type DeadLetters interface {
	DeadLetters(ctx context.Context, run string) ([]msg.DeadLetter, error)
	DeadLetterAt(ctx context.Context, seq uint64) (msg.DeadLetter, error)
	Replay(ctx context.Context, seq uint64, before func(msg.Batch) error) (msg.Batch, error)
	DropDeadLetter(ctx context.Context, seq uint64, record func(msg.DeadLetter) error) (msg.DeadLetter, error)
	GetRun(ctx context.Context, id string) (ledger.RunRecord, error)
	ResetFailures(ctx context.Context, run, batch string) error
	Accept(ctx context.Context, run, key, by, reason string) (bool, error)
}

// Errors a caller maps to a usage message.
var (
	// ErrNeedYes refuses a destructive command run without --yes.
	ErrNeedYes = errors.New("needs --yes")
	// ErrSelection means a command needs exactly one of sequences, --run
	// or --all.
	ErrSelection = errors.New("name dead letters by sequence, --run RUN or --all")
)

// Selection names dead letters: by sequence, every one of a run, or all.
type Selection struct {
	Seqs []uint64
	Run  string
	All  bool
}

func (s Selection) resolve(ctx context.Context, q DeadLetters) ([]msg.DeadLetter, error) {
	given := 0
	for _, b := range []bool{len(s.Seqs) > 0, s.Run != "", s.All} {
		if b {
			given++
		}
	}
	if given != 1 {
		return nil, ErrSelection
	}
	if s.Run != "" || s.All {
		return q.DeadLetters(ctx, s.Run)
	}
	var out []msg.DeadLetter
	for _, seq := range s.Seqs {
		dl, err := q.DeadLetterAt(ctx, seq)
		if err != nil {
			return nil, err
		}
		out = append(out, dl)
	}
	return out, nil
}

// DLQList prints the dead letters of run ("" for all).
func DLQList(ctx context.Context, q DeadLetters, run string, out Output) error {
	list, err := q.DeadLetters(ctx, run)
	if err != nil {
		return err
	}
	return printList(out, list, "no dead letters",
		"SEQ\tRUN\tBATCH\tHOSTS\tCLASS\tDELIVERIES\tAGE\tREASON\tLAST ERROR",
		func(w io.Writer, d msg.DeadLetter) {
			hosts := "?"
			if b, err := msg.Decode(d.Batch); err == nil {
				hosts = fmt.Sprint(b.Hosts)
			}
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", d.Seq, d.Run, orDash(d.BatchKey()), hosts,
				orDash(d.Class), d.Deliveries, ago(time.Since(d.At).Seconds()), d.Reason, clip(d.LastError, 80))
		})
}

// DLQShow prints one dead letter whole.
func DLQShow(ctx context.Context, q DeadLetters, seq uint64, out Output) error {
	d, err := q.DeadLetterAt(ctx, seq)
	if err != nil {
		return err
	}
	if out.JSON {
		return out.json(d)
	}
	tw := tabwriter.NewWriter(out.W, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s:\t"+f+"\n", append([]any{k}, a...)...) }
	row("seq", "%d", d.Seq)
	row("run", "%s", d.Run)
	row("batch", "%s", orDash(d.BatchKey()))
	row("subject", "%s", d.Subject)
	row("msg id", "%s", d.MsgID)
	row("reason", "%s", d.Reason)
	row("class", "%s", orDash(d.Class))
	row("deliveries", "%d", d.Deliveries)
	row("at", "%s", d.At.Format(time.RFC3339))
	row("last error", "%s", d.LastError)
	if b, err := msg.Decode(d.Batch); err == nil {
		row("hosts", "%d (ids %s)", b.Hosts, clip(b.IDs, 120))
		row("window", "%s", window(b.After, b.Before))
	} else {
		row("message", "not a batch (%v): %d bytes kept", err, len(d.Body)+len(d.Batch))
	}
	return tw.Flush()
}

// resolveSome is resolve that, when s selects nothing, says there is
// nothing to verb.
func (s Selection) resolveSome(ctx context.Context, q DeadLetters, out Output, verb string) ([]msg.DeadLetter, error) {
	list, err := s.resolve(ctx, q)
	if err == nil && len(list) == 0 {
		fmt.Fprintln(out.W, "no dead letters to "+verb)
	}
	return list, err
}

// DLQReplay puts the selected dead letters back on the work queue. Dead
// letters of a run that completed meanwhile are left for drop: workers
// would discard them. It goes on past a failure and returns them all.
func DLQReplay(ctx context.Context, q DeadLetters, sel Selection, out Output) error {
	list, err := sel.resolveSome(ctx, q, out, "replay")
	if err != nil || len(list) == 0 {
		return err
	}
	type result struct {
		Seq   uint64 `json:"seq"`
		Run   string `json:"run"`
		Batch string `json:"batch"`
		Error string `json:"error,omitempty"`
	}
	var results []result
	var errs []error
	for _, d := range list {
		r := result{Seq: d.Seq, Run: d.Run, Batch: d.BatchKey()}
		err := replayable(ctx, q, d)
		if err == nil {
			_, err = replay(ctx, q, d.Seq)
		}
		if err != nil {
			r.Error = err.Error()
			errs = append(errs, fmt.Errorf("dead letter %d: %w", d.Seq, err))
		} else if !out.JSON {
			fmt.Fprintf(out.W, "replayed %d: run %s batch %s is queued again\n", d.Seq, d.Run, r.Batch)
		}
		results = append(results, r)
	}
	if out.JSON {
		if err := out.json(results); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// ErrRunEnded refuses a replay into a run that completed or failed while
// planning: no worker would use the batch.
var ErrRunEnded = errors.New("its run has ended")

func replayable(ctx context.Context, q DeadLetters, d msg.DeadLetter) error {
	rec, err := q.GetRun(ctx, d.Run)
	if err != nil {
		return err
	}
	switch rec.State {
	case ledger.RunComplete:
		return fmt.Errorf("%w: run %s is complete, so workers would discard the batch; drop it", ErrRunEnded, d.Run)
	case ledger.RunFailed:
		return fmt.Errorf("%w: run %s failed while planning and cannot complete; drop it (the next run covers its window)", ErrRunEnded, d.Run)
	}
	return nil
}

// DLQDrop removes the selected dead letters for good and records, in each
// run's record, that the run is accepted as incomplete. Without yes it
// says what it would do and returns ErrNeedYes.
func DLQDrop(ctx context.Context, q DeadLetters, sel Selection, by, reason string, yes bool, out Output) error {
	list, err := sel.resolveSome(ctx, q, out, "drop")
	if err != nil || len(list) == 0 {
		return err
	}
	if !yes {
		runs := map[string]bool{}
		var names []string
		for _, d := range list {
			if !runs[d.Run] {
				runs[d.Run] = true
				names = append(names, d.Run)
			}
		}
		return fmt.Errorf("drop removes %s for good and marks %s %s accepted-incomplete "+
			"(the watermark stays; the next run asks for those hosts again): %w",
			runstat.Count(len(list), "dead letter", "dead letters"), plural(len(names), "run", "runs"), strings.Join(names, ", "), ErrNeedYes)
	}
	var errs []error
	var dropped []msg.DeadLetter
	for _, d := range list {
		got, accepted, err := drop(ctx, q, d.Seq, by, reason)
		if err != nil {
			errs = append(errs, fmt.Errorf("dead letter %d: %w", d.Seq, err))
			continue
		}
		dropped = append(dropped, got)
		if !out.JSON {
			note := "no run record to mark"
			if accepted {
				note = "run accepted as incomplete"
			}
			fmt.Fprintf(out.W, "dropped %d: run %s batch %s (%s)\n", got.Seq, got.Run, orDash(got.BatchKey()), note)
		}
	}
	if out.JSON {
		if dropped == nil {
			dropped = []msg.DeadLetter{}
		}
		if err := out.json(dropped); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// replay puts the dead letter at seq back on the work queue with its
// batch's failure count reset first, so the batch gets its full share of
// retries again.
func replay(ctx context.Context, q DeadLetters, seq uint64) (msg.Batch, error) {
	return q.Replay(ctx, seq, func(b msg.Batch) error { return q.ResetFailures(ctx, b.Run, b.Key()) })
}

// drop removes the dead letter at seq for good. When it belongs to a known
// run that has not completed, the run record first records the drop (who,
// why, which batch): the run is accepted as incomplete; accepted says
// whether that happened. A failure to record leaves the dead letter.
func drop(ctx context.Context, q DeadLetters, seq uint64, by, reason string) (dl msg.DeadLetter, accepted bool, err error) {
	if by == "" {
		return msg.DeadLetter{}, false, failure.Permanent(errors.New("drop dead letter: say who drops it"))
	}
	dl, err = q.DropDeadLetter(ctx, seq, func(dl msg.DeadLetter) error {
		if !msg.ValidRunID(dl.Run) {
			return nil
		}
		key := dl.BatchKey()
		if key == "" {
			key = fmt.Sprintf("dlq-%d", seq)
		}
		var err error
		accepted, err = q.Accept(ctx, dl.Run, key, by, reason)
		return err
	})
	return dl, accepted, err
}

// plural is the noun for n of them.
func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
