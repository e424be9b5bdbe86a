package local

import (
	"context"
	"errors"

	"github.com/qfetch/qfetch/internal/app"
)

// Inspect is the kept state of earlier local runs, opened for the operator
// commands (runs, status, dlq, watermark).
type Inspect struct {
	Queue  app.JetStream
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

// DefaultDir is where `qfetch local` keeps its data when not told.
func DefaultDir() string { return "qfetch-data" }

// Open opens the JetStream store and the directory bucket that earlier
// local runs kept in dir.
func Open(ctx context.Context, dir string) (*Inspect, error) {
	return nil, errors.New("local.Open: not implemented yet")
}
