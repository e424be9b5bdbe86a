package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/objstore"
)

// DefaultPrefix is the key prefix local runs write under in the directory
// bucket (with S3 configured they use QFETCH_S3_PREFIX instead).
const DefaultPrefix = "qualys"

// ErrNoLocalRuns means the directory holds no kept JetStream store: no
// `qfetch local` ran there.
var ErrNoLocalRuns = errors.New("no local runs")

// Inspect is the kept state of earlier local runs, opened for the operator
// commands (runs, status, dlq, watermark).
type Inspect struct {
	Queue app.JetStream
	// Store is the directory bucket, nil when the runs wrote to S3 (the
	// directory has no bucket then: QFETCH_S3_* name the store).
	Store  app.Store
	Prefix string
	close  func()
}

// Close releases what Open opened.
func (i *Inspect) Close() {
	if i != nil && i.close != nil {
		i.close()
	}
}

// DefaultDir is where `qfetch local` keeps its data when not told: the
// user's data directory, outside any working tree, so that runs in
// different checkouts share one history and `git status` stays clean.
func DefaultDir() string {
	return defaultDir(os.Getenv)
}

// defaultDir follows the XDG base directory rules: $XDG_DATA_HOME when it
// is an absolute path (the specification says to ignore a relative one),
// else ~/.local/share. Without a home (a bare container, a service
// account) it falls back to ./qfetch-data, the old default.
func defaultDir(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "qfetch", "local")
	}
	if h := getenv("HOME"); h != "" && filepath.IsAbs(h) {
		return filepath.Join(h, ".local", "share", "qfetch", "local")
	}
	return "qfetch-data"
}

// Open opens the JetStream store and the directory bucket that earlier
// local runs kept in dir, creating nothing: the embedded NATS starts on the
// kept store without listening, and the queue is bound as the operator
// commands bind it (app.Open). It holds the directory's lock until Close:
// two NATS servers on one store would corrupt it, so while a `qfetch local`
// runs on dir, Open fails with ErrBusy (and the other way round).
func Open(ctx context.Context, dir string) (*Inspect, error) {
	natsDir := filepath.Join(dir, "nats")
	if fi, err := os.Stat(natsDir); err != nil || !fi.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s (no JetStream store at %s; `qfetch local --dir %s` makes one)", ErrNoLocalRuns, dir, natsDir, dir)
		}
		return nil, fmt.Errorf("local runs in %s: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	js, stopNATS, err := StartNATS(natsDir)
	if err != nil {
		unlock()
		return nil, err
	}
	stop := func() { stopNATS(); unlock() }
	q, err := app.Open(ctx, js)
	if err != nil {
		stop()
		return nil, fmt.Errorf("local runs in %s: %w", dir, err)
	}
	in := &Inspect{Queue: q, Prefix: DefaultPrefix, close: stop}
	root := filepath.Join(dir, "bucket")
	if fi, err := os.Stat(root); err == nil && fi.IsDir() {
		d, err := objstore.NewDir(root)
		if err != nil {
			stop()
			return nil, err
		}
		in.Store = d
	}
	return in, nil
}

// ErrBusy means another process holds a data directory's lock.
var ErrBusy = errors.New("data directory in use")

// lockDir takes dir's lock (dir/lock), failing at once with ErrBusy when
// another process holds it; the returned func releases it. The lock is the
// kernel's (flock), so a process that dies releases it.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("locking the data directory: %w", err)
	}
	if err := flock(f); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: %s is used by another qfetch process (a `qfetch local` still running, or a command with --local); wait for it to end", ErrBusy, dir)
		}
		return nil, fmt.Errorf("locking the data directory %s: %w", dir, err)
	}
	return func() { _ = f.Close() }, nil
}

// dirSize adds up the sizes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}
