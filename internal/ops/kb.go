package ops

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/runstat"
)

// NewestKBPass is the ID of the newest KnowledgeBase pass, or an error
// wrapping ledger.ErrRunNotFound when there is none.
func NewestKBPass(ctx context.Context, p runstat.Passes) (string, error) {
	ids, err := p.KBPassIDs(ctx)
	if err != nil {
		return "", err
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("no KnowledgeBase pass yet: %w", ledger.ErrRunNotFound)
	}
	return ids[len(ids)-1], nil
}

// printKB ends the newest run's status with one line on the newest
// KnowledgeBase pass: `qfetch status --kb` shows it whole. A pass that
// cannot be read is said so; none yet prints nothing.
func printKB(ctx context.Context, w io.Writer, q runstat.Queue, p runstat.Passes, cfg runstat.Config) {
	s, err := newestKB(ctx, q, p, cfg)
	switch {
	case err == nil:
		fmt.Fprintf(w, "\nknowledgebase: %s\n", kbLine(s))
	case !errors.Is(err, ledger.ErrRunNotFound):
		fmt.Fprintf(w, "\nknowledgebase: cannot be read: %v\n", err)
	}
}

func newestKB(ctx context.Context, q runstat.Queue, p runstat.Passes, cfg runstat.Config) (runstat.Status, error) {
	id, err := NewestKBPass(ctx, p)
	if err != nil {
		return runstat.Status{}, err
	}
	rec, err := q.GetRun(ctx, id)
	if err != nil {
		return runstat.Status{}, err
	}
	return runstat.Of(ctx, q, cfg, rec)
}

// kbLine is a pass's status as one line: state, batches, QIDs, bytes, age.
func kbLine(s runstat.Status) string {
	return fmt.Sprintf("%s %s, %s batches, %d QIDs returned of %d, %s, opened %s ago",
		s.Run, s.State, batches(s), s.HostsReturned, s.HostsPlanned, runstat.Bytes(s.Bytes), ago(s.AgeSeconds))
}
