package tables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
	"golang.org/x/sync/errgroup"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/objstore"
)

// UsedQIDs returns the QIDs that the detections of the given complete runs
// use, read from their table manifests (each lists its run's distinct
// QIDs), and the runs whose tables are not complete yet (their QIDs are
// unknown; the KnowledgeBase planner looks at them again next time).
// A table manifest written before manifests listed QIDs adds none.
func UsedQIDs(ctx context.Context, store Store, prefix string, runs []string) (used hostids.Set, pending []string, err error) {
	seen := map[uint64]struct{}{}
	for _, run := range runs {
		tm, err := readManifest(ctx, store, prefix, run)
		if errors.Is(err, objstore.ErrNotFound) {
			pending = append(pending, run)
			continue
		}
		if err != nil {
			return hostids.Set{}, nil, err
		}
		if tm.QIDs == nil {
			continue
		}
		if err := addQIDs(seen, *tm.QIDs); err != nil {
			return hostids.Set{}, nil, failure.Permanent(fmt.Errorf("tables: the table manifest of %s: %w", run, err))
		}
	}
	return setOf(seen), pending, nil
}

func addQIDs(seen map[uint64]struct{}, s string) error {
	set, err := hostids.Parse(s)
	if err != nil {
		return fmt.Errorf("qids: %w", err)
	}
	for _, id := range set.IDs() {
		seen[id] = struct{}{}
	}
	return nil
}

func setOf(seen map[uint64]struct{}) hostids.Set {
	ids := make([]uint64, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	return hostids.Of(ids)
}

// maxFooter bounds a part's footer as partQIDs reads it: a detections
// part's footer is its schema, its row groups' column chunks and its QIDs
// (a few KiB to a few hundred), so that four reads at once hold at most
// 16 MiB.
const maxFooter = 4 << 20

// footerReads is how many parts' footers a completion reads at once.
const footerReads = 4

// runQIDs is the union of the MetaQIDs of a run's detections parts, read
// from their footers; nil when a part has none (written by an older
// converter: the run's QIDs are unknown).
func runQIDs(ctx context.Context, store Store, ps []Part) (*string, error) {
	var keys []Part
	for _, p := range ps {
		if p.Table == Detections {
			keys = append(keys, p)
		}
	}
	found := make([]string, len(keys))
	missing := make([]bool, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(footerReads)
	for i, p := range keys {
		g.Go(func() error {
			s, ok, err := partQIDs(gctx, store, p.Key, p.Bytes)
			found[i], missing[i] = s, !ok
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if slices.Contains(missing, true) {
		return nil, nil
	}
	seen := map[uint64]struct{}{}
	for i, s := range found {
		if err := addQIDs(seen, s); err != nil {
			return nil, failure.Permanent(fmt.Errorf("tables: %s: %w", keys[i].Key, err))
		}
	}
	out := setOf(seen).String()
	return &out, nil
}

// partQIDs reads MetaQIDs from the footer of the Parquet object key of
// size bytes, holding no more than the footer: a store whose reader seeks
// (both of objstore's) reads the footer alone, any other is read through
// with only its last bytes kept.
func partQIDs(ctx context.Context, store Store, key string, size int64) (string, bool, error) {
	rc, err := store.Get(ctx, key)
	if err != nil {
		return "", false, fmt.Errorf("tables: reading %s: %w", key, err)
	}
	defer rc.Close()
	tail, err := readTail(rc, size)
	if err != nil {
		return "", false, fmt.Errorf("tables: reading the footer of %s: %w", key, err)
	}
	md, err := decodeFooter(tail)
	if err != nil {
		return "", false, failure.Permanent(fmt.Errorf("tables: the footer of %s: %w", key, err))
	}
	for _, kv := range md.KeyValueMetadata {
		if kv.Key == MetaQIDs {
			return kv.Value, true, nil
		}
	}
	return "", false, nil
}

// readTail returns the footer and the 8 bytes after it.
func readTail(r io.Reader, size int64) ([]byte, error) {
	if s, ok := r.(io.ReadSeeker); ok && size >= 8 {
		var end [8]byte
		if _, err := s.Seek(size-8, io.SeekStart); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(s, end[:]); err != nil {
			return nil, err
		}
		n := int64(binary.LittleEndian.Uint32(end[:4]))
		if n > maxFooter || n+8 > size {
			return nil, fmt.Errorf("footer of %d bytes", n)
		}
		if _, err := s.Seek(size-8-n, io.SeekStart); err != nil {
			return nil, err
		}
		b := make([]byte, n+8)
		_, err := io.ReadFull(s, b)
		return b, err
	}
	t := tailWriter{ring: make([]byte, max(min(size, maxFooter+8), 8))}
	if _, err := io.Copy(&t, r); err != nil {
		return nil, err
	}
	b := t.bytes()
	if len(b) < 8 {
		return nil, errors.New("shorter than a Parquet file")
	}
	n := int(binary.LittleEndian.Uint32(b[len(b)-8:]))
	if n+8 > len(b) {
		return nil, fmt.Errorf("footer of %d bytes", n)
	}
	return b[len(b)-8-n:], nil
}

// decodeFooter reads a footer and its 8 closing bytes.
func decodeFooter(b []byte) (format.FileMetaData, error) {
	var md format.FileMetaData
	if len(b) < 8 || string(b[len(b)-4:]) != "PAR1" {
		return md, errors.New("not a Parquet footer")
	}
	if err := thrift.Unmarshal(new(thrift.CompactProtocol), b[:len(b)-8], &md); err != nil {
		return md, err
	}
	return md, nil
}

// tailWriter keeps the last len(ring) bytes written to it.
type tailWriter struct {
	ring []byte
	next int   // where the next byte goes
	n    int64 // bytes written
}

func (t *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	t.n += int64(n)
	if len(p) > len(t.ring) {
		p = p[len(p)-len(t.ring):]
	}
	for len(p) > 0 {
		c := copy(t.ring[t.next:], p)
		p = p[c:]
		t.next = (t.next + c) % len(t.ring)
	}
	return n, nil
}

func (t *tailWriter) bytes() []byte {
	if t.n < int64(len(t.ring)) {
		return t.ring[:t.n]
	}
	return append(slices.Clone(t.ring[t.next:]), t.ring[:t.next]...)
}
