package tables

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
)

// Rebuilder rebuilds sealed runs' tables from the bucket alone: no NATS,
// no ledger, so it repairs what the fleet could not convert and runs where
// only the bucket is reachable.
type Rebuilder struct {
	parts       parts
	concurrency int
	log         *slog.Logger
}

// DefaultRebuildConcurrency is how many parts a rebuild converts at once.
const DefaultRebuildConcurrency = 2

// NewRebuilder builds a rebuilder converting concurrency parts at once
// (default 2).
func NewRebuilder(cfg Config, store Store, concurrency int, log *slog.Logger) *Rebuilder {
	if concurrency < 1 {
		concurrency = DefaultRebuildConcurrency
	}
	return &Rebuilder{parts: parts{store: store, prefix: cfg.Prefix, opt: cfg.Options}, concurrency: concurrency, log: log}
}

// Rebuild converts every batch and Host List page of sealed run (its
// _SUCCESS must be there) from its manifest.json, overwriting the parts,
// removes parts the run does not name, then writes the table manifest and
// the runs row. Two rebuilds write byte-identical files: every time in
// them comes from the run's manifest.
func (r *Rebuilder) Rebuild(ctx context.Context, run string) (Manifest, error) {
	store, prefix := r.parts.store, r.parts.prefix
	m, err := sealed(ctx, store, prefix, run)
	if err != nil {
		return Manifest{}, err
	}
	want, err := items(m)
	if err != nil {
		return Manifest{}, err
	}
	src := Source{Run: m.Run, RunDate: m.Created}
	ps := make([]Part, len(want))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.concurrency)
	for i, it := range want {
		g.Go(func() error {
			p, err := r.parts.write(gctx, src, it)
			if err != nil {
				return fmt.Errorf("rebuilding %s %s of run %s: %w", it.table, it.item, run, err)
			}
			ps[i] = p
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Manifest{}, err
	}
	keep := map[string]bool{}
	for _, p := range ps {
		keep[p.Key] = true
	}
	if err := removeStrays(ctx, store, prefix, m, keep, r.log); err != nil {
		return Manifest{}, err
	}
	var qids *string
	if kindOf(run) == KindRun {
		if qids, err = runQIDs(ctx, store, ps); err != nil {
			return Manifest{}, err
		}
	}
	tm := manifestFor(prefix, m, ps, qids)
	data, err := encodeManifest(tm)
	if err != nil {
		return Manifest{}, err
	}
	if _, err := store.Put(ctx, ManifestKey(prefix, run), bytes.NewReader(data), objstore.PutOptions{ContentType: "application/json"}); err != nil {
		return Manifest{}, fmt.Errorf("tables: writing the table manifest of %s: %w", run, err)
	}
	if err := writeRunRow(ctx, store, tm.RunsKey, runRow(m, tm)); err != nil {
		return Manifest{}, err
	}
	return tm, nil
}

// SealedRuns lists the runs and KnowledgeBase passes whose _SUCCESS the
// bucket holds, ascending (runs first: "kb-" sorts after a digit).
func (r *Rebuilder) SealedRuns(ctx context.Context) ([]string, error) {
	var out []string
	for _, probe := range []string{"x", runid.KBPrefix + "x"} {
		dir := strings.TrimSuffix(objstore.RunPrefix(r.parts.prefix, probe), probe+"/")
		for o, err := range r.parts.store.List(ctx, dir) {
			if err != nil {
				return nil, fmt.Errorf("tables: listing runs: %w", err)
			}
			rest := strings.TrimPrefix(o.Key, dir)
			if run, name, ok := strings.Cut(rest, "/"); ok && name == "_SUCCESS" && kindOf(run) == kindOf(probe) {
				out = append(out, run)
			}
		}
	}
	return out, nil
}

// RebuildAll rebuilds every sealed run, one after another, each with the
// rebuilder's concurrency; it goes on past a run that fails and returns
// every failure.
func (r *Rebuilder) RebuildAll(ctx context.Context, done func(run string, m Manifest, err error)) error {
	runs, err := r.SealedRuns(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, run := range runs {
		m, err := r.Rebuild(ctx, run)
		if done != nil {
			done(run, m, err)
		}
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("tables: %d of %d runs not rebuilt: %w", len(errs), len(runs), errs[0])
	}
	return nil
}

// readManifest reads a run's table manifest.
func readManifest(ctx context.Context, store Store, prefix, run string) (Manifest, error) {
	rc, err := store.Get(ctx, ManifestKey(prefix, run))
	if err != nil {
		return Manifest{}, fmt.Errorf("tables: reading the table manifest of %s: %w", run, err)
	}
	defer rc.Close()
	var tm Manifest
	if err := json.NewDecoder(rc).Decode(&tm); err != nil {
		return Manifest{}, failure.Permanent(fmt.Errorf("tables: the table manifest of %s cannot be read: %w", run, err))
	}
	return tm, nil
}
