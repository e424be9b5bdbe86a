package tables

import (
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go"
)

// batchRows is how many rows are handed to parquet-go at a time.
const batchRows = 256

// sink buffers rows in a fixed batch and writes them, flushing a row group
// every RowGroupRows rows or maxRowGroupBytes of text, whichever comes
// first. Its rows are reused: parquet-go copies what Write is given.
type sink[T any] struct {
	w          *parquet.GenericWriter[T]
	rows       []T
	n          int
	groupRows  int
	groupBytes int
	maxRows    int
	total      int64
}

func newSink[T any](w io.Writer, table string, opt Options) sink[T] {
	return sink[T]{
		w:       newWriter[T](w, table),
		rows:    make([]T, batchRows),
		maxRows: rowGroupRows(opt),
	}
}

// next is the row to fill; it holds what the row it reuses held.
func (s *sink[T]) next() *T { return &s.rows[s.n] }

// commit adds the row next returned; size is its text's bytes.
func (s *sink[T]) commit(size int) error {
	s.n++
	s.groupRows++
	s.groupBytes += size
	if s.n == len(s.rows) || s.groupRows >= s.maxRows || s.groupBytes >= maxRowGroupBytes {
		return s.write()
	}
	return nil
}

func (s *sink[T]) write() error {
	if s.n > 0 {
		if _, err := s.w.Write(s.rows[:s.n]); err != nil {
			return fmt.Errorf("tables: writing rows: %w", err)
		}
		s.total += int64(s.n)
		s.n = 0
	}
	if s.groupRows >= s.maxRows || s.groupBytes >= maxRowGroupBytes {
		if err := s.w.Flush(); err != nil {
			return fmt.Errorf("tables: writing a row group: %w", err)
		}
		s.groupRows, s.groupBytes = 0, 0
	}
	return nil
}

// close writes the last rows, row group and footer.
func (s *sink[T]) close() error {
	if err := s.write(); err != nil {
		return err
	}
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("tables: closing the file: %w", err)
	}
	return nil
}
