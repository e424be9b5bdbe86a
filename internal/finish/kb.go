package finish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
)

// maxManifestRead bounds what is read of the previous pass's manifest: a
// pass of the whole KnowledgeBase lists some hundred batches.
const maxManifestRead = 64 << 20

// knownQIDs are the QIDs qfetch knows once KnowledgeBase pass rec is sealed
// with the results used: the previous complete pass's known QIDs, the
// QIDs its answers held, and its backfill (asked for: a QID Qualys does not
// return is not asked again each pass).
func (f *Finisher) knownQIDs(ctx context.Context, rec ledger.RunRecord, used []ledger.BatchResult) (string, error) {
	prev, err := f.previousKnown(ctx, rec.ID)
	if err != nil {
		return "", fmt.Errorf("finish %s: reading the QIDs the previous pass knew: %w", rec.ID, err)
	}
	var all []uint64
	add := func(ids, what string) error {
		s, err := hostids.Parse(ids)
		if err != nil {
			return fmt.Errorf("finish %s: %s: %w", rec.ID, what, err)
		}
		all = append(all, s.IDs()...)
		return nil
	}
	if err := add(prev, "known QIDs of the previous pass"); err != nil {
		// Only what the backfill asks again: not a reason to hold the
		// seal up.
		f.log.Warn("the previous pass's known QIDs are unreadable; this pass knows only its own", "run", rec.ID, "err", err)
	}
	for _, r := range used {
		if err := add(r.IDs, "QIDs of batch "+r.Batch); err != nil {
			return "", err
		}
	}
	if err := add(rec.Backfill, "backfill"); err != nil {
		return "", err
	}
	return hostids.Of(all).String(), nil
}

// previousKnown reads the known QIDs of the pass kb/latest.json names ("":
// none yet). A missing or unreadable manifest there only costs QIDs asked
// again, so it is logged and taken as none; a store that does not answer
// is an error, so that a passing fault does not forget what is known.
func (f *Finisher) previousKnown(ctx context.Context, pass string) (string, error) {
	var l Latest
	if ok, err := f.readJSON(ctx, objstore.KBLatestKey(f.prefix), 1<<20, &l); err != nil || !ok {
		return "", err
	}
	if !runid.Valid(l.Run) || !runid.IsKB(l.Run) {
		f.log.Warn("kb/latest.json names no KnowledgeBase pass; taking no QIDs as known", "run", pass, "names", l.Run)
		return "", nil
	}
	var m struct {
		KnownQIDs string `json:"known_qids"`
	}
	if ok, err := f.readJSON(ctx, objstore.ManifestKey(f.prefix, l.Run), maxManifestRead, &m); err != nil || !ok {
		if err == nil {
			f.log.Warn("the manifest kb/latest.json names is missing; taking no QIDs as known", "run", pass, "names", l.Run)
		}
		return "", err
	}
	return m.KnownQIDs, nil
}

// readJSON decodes key into v: false when the key holds nothing or nothing
// decodable (logged), an error when the store fails.
func (f *Finisher) readJSON(ctx context.Context, key string, limit int64, v any) (bool, error) {
	r, err := f.store.Get(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer r.Close()
	if err := json.NewDecoder(io.LimitReader(r, limit)).Decode(v); err != nil {
		f.log.Warn("an object the seal reads is not JSON; taken as absent", "key", key, "err", err)
		return false, nil
	}
	return true, nil
}
