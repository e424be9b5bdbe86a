// Package ops holds qfetch's operator commands: runs, status, dead letters,
// the watermark and the preflight check, as tables for people and JSON for
// scripts.
package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/runstat"
)

// Output is where and how a command prints.
type Output struct {
	W    io.Writer
	JSON bool
	// TTY rewrites the progress line in place (--watch) instead of printing
	// one line per refresh.
	TTY bool
}

func (o Output) json(v any) error {
	enc := json.NewEncoder(o.W)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printList prints list as JSON (an empty array rather than null when there
// is none), or else as a table under header, a row each, or else says empty.
func printList[T any](out Output, list []T, empty, header string, row func(w io.Writer, v T)) error {
	if out.JSON {
		if list == nil {
			list = []T{}
		}
		return out.json(list)
	}
	if len(list) == 0 {
		fmt.Fprintln(out.W, empty)
		return nil
	}
	tw := tabwriter.NewWriter(out.W, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, v := range list {
		row(tw, v)
	}
	return tw.Flush()
}

// Runs prints the status of the n newest runs, newest first: n < 0 means
// every run and 0 none (an empty list, as kubectl logs --tail=0 prints no
// line), so that "no runs yet" is said only when there are none.
func Runs(ctx context.Context, q runstat.Queue, cfg runstat.Config, n int, out Output) error {
	if n == 0 {
		if out.JSON {
			return out.json([]runstat.Status{})
		}
		return nil
	}
	if n < 0 {
		n = math.MaxInt
	}
	list, err := runstat.Recent(ctx, q, cfg, n)
	if err != nil {
		return err
	}
	return printList(out, list, "no runs yet: the planner opens the first one",
		"RUN\tSTATE\tWINDOW\tBATCHES\tHOSTS\tBYTES\tRETRIES\tDEAD\tAGE",
		func(w io.Writer, s runstat.Status) {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%s\n", s.Run, s.State, window(s.After, s.Before),
				batches(s), s.HostsRequested, runstat.Bytes(s.Bytes), s.Retries, s.DeadLetters, ago(s.AgeSeconds))
		})
}

// Status prints one run ("" for the newest) in detail. With watch it then
// shows a progress line every period until the run reaches a terminal
// state or ctx ends.
//
// A KnowledgeBase pass is shown as a run when named; without a run, the
// table view ends with a line on the newest pass when q lists them
// (runstat.Passes).
func Status(ctx context.Context, q runstat.Queue, cfg runstat.Config, run string, watch bool, every time.Duration, out Output) error {
	newest := run == ""
	if newest {
		ids, err := q.RunIDs(ctx)
		if err != nil {
			return err
		}
		// Passes are shown apart, below.
		ids = slices.DeleteFunc(ids, runid.IsKB)
		if len(ids) == 0 {
			return fmt.Errorf("no runs yet: %w", ledger.ErrRunNotFound)
		}
		run = ids[len(ids)-1]
	}
	read := func() (runstat.Status, error) {
		rec, err := q.GetRun(ctx, run)
		if err != nil {
			return runstat.Status{}, err
		}
		return runstat.Of(ctx, q, cfg, rec)
	}
	s, err := read()
	if err != nil {
		return err
	}
	if out.JSON && !watch {
		return out.json(s)
	}
	if !out.JSON {
		printStatus(out.W, s)
	}
	if !watch {
		if p, ok := q.(runstat.Passes); ok && newest && !out.JSON {
			printKB(ctx, out.W, q, p, cfg)
		}
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		switch {
		case out.JSON:
			// One object per line: a stream a script can follow.
			b, _ := json.Marshal(s)
			fmt.Fprintf(out.W, "%s\n", b)
		case out.TTY:
			fmt.Fprintf(out.W, "\r\033[K%s", progressLine(s))
		default:
			fmt.Fprintln(out.W, progressLine(s))
		}
		if s.State.Terminal() {
			if out.TTY && !out.JSON {
				fmt.Fprintln(out.W)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if out.TTY && !out.JSON {
				fmt.Fprintln(out.W)
			}
			return nil
		case <-t.C:
		}
		if s, err = read(); err != nil {
			return err
		}
	}
}

func printStatus(w io.Writer, s runstat.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s:\t"+f+"\n", append([]any{k}, a...)...) }
	row("run", "%s", s.Run)
	row("state", "%s (record: %s)", s.State, s.RecordState)
	row("window", "%s", window(s.After, s.Before))
	row("opened", "%s (%s ago)", s.Created.Format(time.RFC3339), ago(s.AgeSeconds))
	if !s.Completed.IsZero() {
		row("completed", "%s", s.Completed.Format(time.RFC3339))
	}
	planned := fmt.Sprint(s.BatchesPlanned)
	if !s.PlanningComplete {
		planned += " so far (planning)"
	}
	drained := ""
	if s.Drained > 0 {
		drained = fmt.Sprintf(", %d drained (run %s)", s.Drained, s.State)
	}
	row("batches", "%d done of %s, %d queued, %d split%s", s.BatchesDone, planned, s.BatchesQueued, s.Splits, drained)
	if s.Kind == runstat.KindKB {
		row("kind", "KnowledgeBase pass")
		row("qids", "%d planned, %d requested, %d returned", s.HostsPlanned, s.HostsRequested, s.HostsReturned)
	} else {
		row("hosts", "%d planned, %d requested, %d with detections", s.HostsPlanned, s.HostsRequested, s.HostsReturned)
	}
	row("stored", "%s (%s/s)", runstat.Bytes(s.Bytes), runstat.Bytes(int64(s.BytesPerSecond)))
	row("retries", "%d", s.Retries)
	row("dead letters", "%d", s.DeadLetters)
	if s.ETASeconds > 0 {
		row("eta", "%s", dur(s.ETASeconds))
	}
	if s.Manifest != "" {
		row("manifest", "%s", s.Manifest)
	}
	if s.Error != "" {
		row("error", "%s", s.Error)
	}
	if a := s.Accepted; a != nil {
		row("accepted", "incomplete by %s at %s (%s): dropped %s", a.By, a.At.Format(time.RFC3339), a.Reason, strings.Join(a.Dropped, ", "))
	}
	if s.Action != "" {
		row("action", "%s", s.Action)
	}
	_ = tw.Flush()
}

// progressLine is a bar and the figures that move.
func progressLine(s runstat.Status) string {
	const width = 30
	frac := 0.0
	if s.BatchesPlanned > 0 {
		frac = float64(s.BatchesDone) / float64(s.BatchesPlanned)
	}
	filled := int(frac * width)
	bar := strings.Repeat("#", filled) + strings.Repeat(".", width-filled)
	eta := "-"
	if s.ETASeconds > 0 {
		eta = dur(s.ETASeconds)
	}
	drained := ""
	if s.Drained > 0 {
		drained = fmt.Sprintf("  drained %d", s.Drained)
	}
	return fmt.Sprintf("%s [%s] %3.0f%% %s batches  %s  %s/s  retries %d  dead %d%s  eta %s  %s",
		s.Run, bar, frac*100, batches(s), runstat.Bytes(s.Bytes), runstat.Bytes(int64(s.BytesPerSecond)),
		s.Retries, s.DeadLetters, drained, eta, s.State)
}

func batches(s runstat.Status) string {
	total := fmt.Sprint(s.BatchesPlanned)
	if !s.PlanningComplete {
		total += "+"
	}
	return fmt.Sprintf("%d/%s", s.BatchesDone, total)
}

func window(after, before time.Time) string {
	a := "beginning"
	if !after.IsZero() {
		a = after.UTC().Format(time.RFC3339)
	}
	return a + " → " + before.UTC().Format(time.RFC3339)
}

func ago(seconds float64) string { return dur(seconds) }

func dur(seconds float64) string {
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Minute:
		return d.Round(time.Minute).String()
	default:
		return d.Round(time.Second).String()
	}
}
