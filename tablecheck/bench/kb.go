package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/tables"
	"github.com/qfetch/qfetch/tablecheck"
)

// kbRow is one KnowledgeBase pass and the memory peaks of the planner
// pass that made it.
type kbRow struct {
	tablecheck.KBPass
	heap, rss int64 // bytes; rss -1 when unknown
}

// printKB prints each KnowledgeBase pass: QIDs, the XML and Parquet it
// left, how long after the planner pass's start it was fetched (sealed)
// and its kb table complete (the table loop converts each batch as it is
// acknowledged, so both overlap), the conversion of its XML alone
// (sequential, timed again after the estate is made), and the process's
// peaks during the planner pass.
func printKB(root string, rows []kbRow) error {
	fmt.Printf("KnowledgeBase passes (in one process: simulator, NATS, planner, workers, table loop)\n\n")
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "pass\tkind\tQIDs\tbackfill\tVULNs served\tXML MiB\tParquet MiB\tfetched s\tkb table s\tconversion alone s\tpeak heap MiB\tpeak RSS MiB\t")
	for _, r := range rows {
		kind := "incremental"
		if r.After.IsZero() {
			kind = "full"
		}
		backfill, _ := hostids.Count(r.Backfill)
		xml, _ := treeSize(filepath.Join(root, "kb", r.ID))
		parts, _ := filepath.Glob(filepath.Join(root, "tables", "kb", "*", "run="+r.ID))
		var pq int64
		for _, p := range parts {
			n, _ := treeSize(p)
			pq += n
		}
		conv, err := convertAgain(root, r.ID)
		if err != nil {
			return err
		}
		rss := "n/a"
		if r.rss >= 0 {
			rss = mib(r.rss)
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%.1f\t%.1f\t%.1f\t%s\t%s\t\n", r.ID, kind, r.HostsPlanned, backfill, r.VULNs,
			mib(xml), mib(pq), r.Fetched.Seconds(), r.Converted.Seconds(), conv.Seconds(), mib(r.heap), rss)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println()
	return nil
}

// convertAgain converts the pass's KnowledgeBase answers once more, one
// after the other, into one discarded kb file, read through the same
// directory store, and returns how long that took.
func convertAgain(root, pass string) (time.Duration, error) {
	store, err := objstore.NewDir(filepath.Dir(root))
	if err != nil {
		return 0, err
	}
	files, err := filepath.Glob(filepath.Join(root, "kb", pass, "vulns", "*"))
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	start := time.Now()
	kw := tables.NewKBWriter(io.Discard, tables.Source{Run: pass, RunDate: time.Now().UTC()}, tables.Options{})
	for _, f := range files {
		key := path.Join(filepath.Base(root), "kb", pass, "vulns", filepath.Base(f))
		r, err := store.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		err = kw.Add(ctx, key, r)
		r.Close()
		if err != nil {
			return 0, fmt.Errorf("converting %s: %w", key, err)
		}
	}
	if _, err := kw.Close(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }

// memWatch samples the Go heap every 10ms and reads the process's peak
// RSS (VmHWM, reset at the start through /proc/self/clear_refs) at the end.
type memWatch struct {
	done chan struct{}
	wg   sync.WaitGroup
	peak int64
}

func watchMemory() *memWatch {
	// Linux: writing 5 resets VmHWM to the current RSS.
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
	m := &memWatch{done: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			m.peak = max(m.peak, int64(s[0].Value.Uint64()))
			select {
			case <-m.done:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memWatch) stop() (heap, rss int64) {
	close(m.done)
	m.wg.Wait()
	return m.peak, peakRSS()
}

// peakRSS is VmHWM from /proc/self/status, -1 where there is none.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
