package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Host List pages are recorded under <run>.page.<n> in QFETCH_RUNS, one key
// per page number: a page stored again (a retried page, a resumed planner)
// overwrites its own record, as its object overwrites its own key.

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

// Pages returns every Host List page recorded for run, in page order.
func (l *Ledger) Pages(ctx context.Context, run string) ([]objstore.Object, error) {
	if !msg.ValidRunID(run) {
		return nil, failure.Permanent(fmt.Errorf("ledger: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	type page struct {
		n int
		o objstore.Object
	}
	var pages []page
	err := l.eachValue(ctx, run+".page.*", func(key string, v []byte) error {
		n, err := strconv.Atoi(strings.TrimPrefix(key, run+".page."))
		var o objstore.Object
		if err == nil {
			err = json.Unmarshal(v, &o)
		}
		if err != nil {
			return failure.Permanent(fmt.Errorf("ledger: page record %s is garbled: %w", key, err))
		}
		pages = append(pages, page{n, o})
		return nil
	})
	slices.SortFunc(pages, func(a, b page) int { return a.n - b.n })
	out := make([]objstore.Object, 0, len(pages))
	for _, p := range pages {
		out = append(out, p.o)
	}
	return out, err
}
