package ops

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
)

// Watermarks is the watermark part of the queue.
type Watermarks interface {
	Watermark(ctx context.Context) (ledger.Watermark, error)
	WatermarkHistory(ctx context.Context) ([]ledger.Watermark, error)
	SetWatermark(ctx context.Context, w ledger.Watermark) error
}

// WatermarkShow prints the watermark and its history, oldest first in the
// table and in JSON alike, as helm history and kubectl rollout history list
// revisions: the last entry is the current watermark.
func WatermarkShow(ctx context.Context, q Watermarks, out Output) error {
	hist, err := q.WatermarkHistory(ctx)
	if err != nil {
		return err
	}
	cur, err := q.Watermark(ctx)
	if err != nil && !errors.Is(err, ledger.ErrNoWatermark) {
		return err
	}
	if out.JSON {
		v := struct {
			Current *ledger.Watermark  `json:"current"`
			History []ledger.Watermark `json:"history"`
		}{History: hist}
		if err == nil {
			v.Current = &cur
		}
		if v.History == nil {
			v.History = []ledger.Watermark{}
		}
		return out.json(v)
	}
	if err != nil {
		fmt.Fprintln(out.W, "no watermark yet: no run has completed, so the next run starts at QFETCH_PLAN_FIRST_AFTER (or the beginning)")
		return nil
	}
	fmt.Fprintf(out.W, "watermark %s (the next window starts here, minus QFETCH_PLAN_OVERLAP)\n\n", cur.Time.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(out.W, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tSET AT\tBY\tRUN\tREASON")
	for _, w := range hist {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.Time.UTC().Format(time.RFC3339), w.At.UTC().Format(time.RFC3339),
			w.By, orDash(w.Run), orDash(w.Reason))
	}
	return tw.Flush()
}

// WatermarkSet moves the watermark to t, backwards too, recording by and
// reason in its history. Without yes it says what would change and returns
// ErrNeedYes.
func WatermarkSet(ctx context.Context, q Watermarks, t time.Time, by, reason string, yes bool, out Output) error {
	if reason == "" {
		return errors.New("say why with --reason: it is kept in the watermark's history")
	}
	if by == "" {
		return errors.New("say who with --by")
	}
	from := "none"
	if cur, err := q.Watermark(ctx); err == nil {
		from = cur.Time.UTC().Format(time.RFC3339)
	} else if !errors.Is(err, ledger.ErrNoWatermark) {
		return err
	}
	to := t.UTC().Format(time.RFC3339)
	if !yes {
		return fmt.Errorf("set moves the watermark from %s to %s: the next run's window starts there "+
			"(earlier: hosts fetched again; later: hosts processed in between are never fetched): %w", from, to, ErrNeedYes)
	}
	if err := q.SetWatermark(ctx, ledger.Watermark{Time: t.UTC(), By: by, Reason: reason}); err != nil {
		return err
	}
	if out.JSON {
		return out.json(map[string]string{"from": from, "to": to, "by": by, "reason": reason})
	}
	fmt.Fprintf(out.W, "watermark moved from %s to %s by %s (%s)\n", from, to, by, reason)
	return nil
}
