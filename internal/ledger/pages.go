package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Host List pages are recorded in the run record (RunRecord.Pages, written
// by the planner pass that holds the run) or, as older versions did, under
// <run>.page.<n> in QFETCH_RUNS, one key per page number. Either way a page
// stored again (a retried page, a resumed planner) replaces its own entry,
// as its object replaces its own key.

// MarkPage records Host List page number page of run, stored as o (with
// its host count), so that the manifest lists it without listing the
// bucket.
func (l *Ledger) MarkPage(ctx context.Context, run string, page int, o objstore.Object) error {
	if !msg.ValidRunID(run) {
		return failure.Permanent(fmt.Errorf("ledger: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	if page < 1 {
		return failure.Permanent(fmt.Errorf("ledger: host list page %d of %s: pages count from 1", page, run))
	}
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	key := run + ".page." + strconv.Itoa(page)
	if _, err := l.runs.Put(ctx, key, data); err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: record %s: %w", key, err))
	}
	return nil
}

// Pages returns every Host List page recorded for run, in page order: those
// of the run record (RunRecord.Pages) and the <run>.page.<n> records of
// older versions, the run record's winning where both have a page number. A
// page the run record leaves empty (a zero Key: a hole, a page not stored
// yet by its pass) is skipped unless an older record names it. A run
// without a record yields the older records alone.
func (l *Ledger) Pages(ctx context.Context, run string) ([]objstore.Object, error) {
	if !msg.ValidRunID(run) {
		return nil, failure.Permanent(fmt.Errorf("ledger: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	pages := map[int]objstore.Object{}
	err := l.eachValue(ctx, run+".page.*", func(key string, v []byte) error {
		n, err := strconv.Atoi(strings.TrimPrefix(key, run+".page."))
		var o objstore.Object
		if err == nil {
			err = json.Unmarshal(v, &o)
		}
		if err != nil {
			return failure.Permanent(fmt.Errorf("ledger: page record %s is garbled: %w", key, err))
		}
		pages[n] = o
		return nil
	})
	if err != nil {
		return nil, err
	}
	rec, err := l.GetRun(ctx, run)
	switch {
	case errors.Is(err, ErrRunNotFound):
	case err != nil:
		return nil, err
	default:
		for i, o := range rec.Pages {
			if o.Key != "" {
				pages[i+1] = o
			}
		}
	}
	out := make([]objstore.Object, 0, len(pages))
	for _, n := range slices.Sorted(maps.Keys(pages)) {
		out = append(out, pages[n])
	}
	return out, nil
}
