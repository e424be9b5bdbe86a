package tables

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/finish"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
)

// memLedger is the part of the run ledger a Builder uses, in memory.
type memLedger struct {
	mu    sync.Mutex
	runs  map[string]ledger.RunRecord
	done  map[string]ledger.BatchResult // run/batch
	pages map[string]objstore.Object    // run/n
	parts map[string]ledger.TablePart   // run/kind/item
}

func newMemLedger() *memLedger {
	return &memLedger{runs: map[string]ledger.RunRecord{}, done: map[string]ledger.BatchResult{},
		pages: map[string]objstore.Object{}, parts: map[string]ledger.TablePart{}}
}

func (l *memLedger) GetRun(_ context.Context, id string) (ledger.RunRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.runs[id]
	if !ok {
		return r, ledger.ErrRunNotFound
	}
	return r, nil
}

func (l *memLedger) DoneBatch(_ context.Context, run, batch string) (ledger.BatchResult, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.done[run+"/"+batch]
	return r, ok, nil
}

func (l *memLedger) Page(_ context.Context, run string, n int) (objstore.Object, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	o, ok := l.pages[run+"/"+strconv.Itoa(n)]
	return o, ok, nil
}

func (l *memLedger) Splits(context.Context, string) ([]ledger.Split, error) { return nil, nil }

func (l *memLedger) DoneBatches(_ context.Context, run string) ([]ledger.BatchResult, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ledger.BatchResult
	for _, r := range l.done {
		if r.Run == run {
			out = append(out, r)
		}
	}
	return out, nil
}

func (l *memLedger) RecordTablePart(_ context.Context, p ledger.TablePart) error {
	if err := (msg.TableJob{Run: p.Run, Kind: p.Kind, Item: p.Item}).Validate(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.parts[p.Run+"/"+p.Kind+"/"+p.Item] = p
	return nil
}

func (l *memLedger) CountTableParts(ctx context.Context, run string) (int, error) {
	ps, err := l.TableParts(ctx, run)
	return len(ps), err
}

func (l *memLedger) TableParts(_ context.Context, run string) ([]ledger.TablePart, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []ledger.TablePart
	for _, p := range l.parts {
		if p.Run == run {
			out = append(out, p)
		}
	}
	return out, nil
}

// recordingPub records the jobs queued.
type recordingPub struct {
	mu   sync.Mutex
	jobs []string
}

func (p *recordingPub) PublishTableJob(_ context.Context, run, kind, item string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.jobs = append(p.jobs, run+"/"+kind+"/"+item)
	return nil
}

// sealedRun stores a sealed run (or KB pass) in the bucket and the ledger:
// one batch per object of batches, Host List (or QID listing) pages.
func sealedRun(t *testing.T, store Store, l *memLedger, prefix, run string, created time.Time, batches [][]byte, pages [][]byte) finish.Manifest {
	t.Helper()
	ctx := context.Background()
	m := finish.Manifest{Run: run, After: created.Add(-time.Hour), Before: created, Created: created, Completed: created.Add(time.Minute)}
	for i, b := range batches {
		key := objstore.DetectionKey(prefix, run, i+1, 1)
		o, err := store.Put(ctx, key, bytes.NewReader(b), objstore.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		k := strconv.Itoa(i + 1)
		m.Batches = append(m.Batches, finish.ManifestBatch{Batch: k, Objects: finish.Objects{o}})
		l.done[run+"/"+k] = ledger.BatchResult{Run: run, Batch: k, Objects: []objstore.Object{o}}
	}
	for i, p := range pages {
		o, err := store.Put(ctx, objstore.HostListPageKey(prefix, run, i+1), bytes.NewReader(p), objstore.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m.HostList = append(m.HostList, o)
		l.pages[run+"/"+strconv.Itoa(i+1)] = o
	}
	data, _ := json.Marshal(m)
	for key, body := range map[string][]byte{objstore.ManifestKey(prefix, run): data, objstore.SuccessKey(prefix, run): nil} {
		if _, err := store.Put(ctx, key, bytes.NewReader(body), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l.runs[run] = ledger.RunRecord{ID: run, State: ledger.RunComplete, Created: created, BatchesPlanned: len(batches),
		HostListPages: len(pages), Totals: &ledger.Totals{Batches: len(batches), HostListPages: len(pages)}}
	return m
}

func newDirStore(t *testing.T) *objstore.Dir {
	t.Helper()
	d, err := objstore.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func getObject(t *testing.T, store Store, key string) []byte {
	t.Helper()
	rc, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const kbPass = "kb-20261204T120000Z-a1b2c3"

// TestKBPassTables builds a KnowledgeBase pass's kb table as the fleet
// does, job by job, then rebuilds it from the bucket alone: same manifest.
func TestKBPassTables(t *testing.T) {
	ctx := context.Background()
	store, l, pub := newDirStore(t), newMemLedger(), &recordingPub{}
	created := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sealedRun(t, store, l, "q", kbPass, created,
		[][]byte{readSample(t, "kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml"), readSample(t, "kb_2vulns_empty-cdata_correlation_threat-intel_demisto-fixture.xml")},
		[][]byte{[]byte("<ID_SET/>")})
	b := NewBuilder(Config{Prefix: "q"}, store, l, pub, slog.New(slog.DiscardHandler))

	if err := b.Sealed(ctx, kbPass, []string{"1", "2"}, []int{1}); err != nil {
		t.Fatal(err)
	}
	if want := []string{kbPass + "/kb/1", kbPass + "/kb/2"}; !slices.Equal(pub.jobs, want) {
		t.Fatalf("Sealed queued %v, want %v (no hosts job for the QID listing)", pub.jobs, want)
	}
	res, err := b.Convert(ctx, Job{Run: kbPass, Kind: msg.TableKB, Item: "1"})
	if err != nil || res.Complete || res.Part.Rows != 42 {
		t.Fatalf("first part: %+v, %v", res, err)
	}
	if want := "q/tables/kb/run_date=2026-12-04/run=" + kbPass + "/part-batch-000001.parquet"; res.Part.Key != want {
		t.Fatalf("part key %s, want %s", res.Part.Key, want)
	}
	res, err = b.Convert(ctx, Job{Run: kbPass, Kind: msg.TableKB, Item: "2"})
	if err != nil || !res.Complete {
		t.Fatalf("second part: %+v, %v", res, err)
	}
	manifest := getObject(t, store, ManifestKey("q", kbPass))
	var tm Manifest
	if err := json.Unmarshal(manifest, &tm); err != nil {
		t.Fatal(err)
	}
	if tm.Kind != KindKB || tm.KBRows != 44 || len(tm.Parts) != 2 || tm.QIDs != nil || tm.DetectionRows != 0 {
		t.Fatalf("table manifest %s", manifest)
	}
	runs := readRows[runCols](t, getObject(t, store, tm.RunsKey))
	if len(runs) != 1 || runs[0].Kind != KindKB || runs[0].KBRows != 44 || runs[0].Batches != 2 || runs[0].Run != kbPass {
		t.Fatalf("runs row %+v", runs)
	}
	st, err := b.Status(ctx, kbPass)
	if err != nil || !st.Complete || st.Expected != 2 || st.Recorded != 2 {
		t.Fatalf("status %+v, %v", st, err)
	}

	// A part of another table named for the pass is a stray the
	// completion would remove; a rebuild writes the same manifest.
	rb := NewRebuilder(Config{Prefix: "q"}, store, 1, slog.New(slog.DiscardHandler))
	sealedRuns, err := rb.SealedRuns(ctx)
	if err != nil || !slices.Equal(sealedRuns, []string{kbPass}) {
		t.Fatalf("sealed runs %v, %v", sealedRuns, err)
	}
	if _, err := store.Put(ctx, PartKey("q", KB, kbPass, created, "batch-000009"), bytes.NewReader([]byte("x")), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rb.Rebuild(ctx, kbPass); err != nil {
		t.Fatal(err)
	}
	if got := getObject(t, store, ManifestKey("q", kbPass)); !bytes.Equal(got, manifest) {
		t.Fatalf("rebuilt manifest differs:\n%s\nwant\n%s", got, manifest)
	}
	if _, err := store.Stat(ctx, PartKey("q", KB, kbPass, created, "batch-000009")); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("stray part: %v", err)
	}
}

// TestForgedKBJobs: a kb job names a KB pass's batch, nothing else.
func TestForgedKBJobs(t *testing.T) {
	ctx := context.Background()
	store, l := newDirStore(t), newMemLedger()
	created := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	sealedRun(t, store, l, "", kbPass, created, [][]byte{readSample(t, "kb_1vuln_details-default_keepalive-comment-in-response_recorded_200.xml")}, nil)
	sealedRun(t, store, l, "", "run-1", created, [][]byte{readSample(t, "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml")}, nil)
	b := NewBuilder(Config{}, store, l, nil, slog.New(slog.DiscardHandler))
	for _, j := range []Job{
		{Run: kbPass, Kind: msg.TableDetections, Item: "1"},
		{Run: kbPass, Kind: msg.TableHosts, Item: "1"},
		{Run: "run-1", Kind: msg.TableKB, Item: "1"},
		{Run: kbPass, Kind: msg.TableKB, Item: "2"},
	} {
		if _, err := b.Convert(ctx, j); err == nil || failure.ClassOf(err) != failure.ClassPermanent {
			t.Errorf("job %s: %v, want a permanent error", j, err)
		}
	}
	// A KnowledgeBase answer stored as a detection batch is malformed.
	l.done["run-1/1"] = ledger.BatchResult{Run: "run-1", Batch: "1", Objects: l.done[kbPass+"/1"].Objects}
	if _, err := b.Convert(ctx, Job{Run: "run-1", Kind: msg.TableDetections, Item: "1"}); !errors.Is(err, ErrMalformed) {
		t.Errorf("a KB answer converted as detections: %v", err)
	}
}

// noSeek hides the directory store's seekable files, as S3's reader is.
type noSeek struct{ Store }

func (s noSeek) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{rc, rc}, nil
}

// TestRunQIDs: a run's table manifest lists its detections' QIDs, read
// from its parts' footers (by seeking, or streamed), and UsedQIDs adds
// the runs' manifests up.
func TestRunQIDs(t *testing.T) {
	for name, wrap := range map[string]func(Store) Store{"seek": func(s Store) Store { return s }, "stream": func(s Store) Store { return noSeek{s} }} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			store, l := wrap(newDirStore(t)), newMemLedger()
			created := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
			sealedRun(t, store, l, "p", "run-1", created, [][]byte{
				readSample(t, "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml"),
				readSample(t, "hld_1host_qds_unique-vuln-id_warning-truncated_elastic-fixture.xml"),
				readSample(t, "hld_no-matching-hosts_empty-response_recorded_200.xml"),
			}, [][]byte{readSample(t, "hostlist_details-none_idset_recorded_200.xml")})
			sealedRun(t, store, l, "p", "run-2", created.Add(time.Hour), [][]byte{
				readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml"),
			}, nil)
			b := NewBuilder(Config{Prefix: "p"}, store, l, nil, slog.New(slog.DiscardHandler))
			for _, j := range []Job{{"run-1", msg.TableDetections, "1"}, {"run-1", msg.TableDetections, "2"}, {"run-1", msg.TableDetections, "3"},
				{"run-1", msg.TableHosts, "1"}, {"run-2", msg.TableDetections, "1"}} {
				if _, err := b.Convert(ctx, j); err != nil {
					t.Fatalf("%s: %v", j, err)
				}
			}
			var tm Manifest
			if err := json.Unmarshal(getObject(t, store, ManifestKey("p", "run-1")), &tm); err != nil {
				t.Fatal(err)
			}
			if tm.QIDs == nil || *tm.QIDs != "38170,38173,38601,197595,197597" || tm.Kind != KindRun {
				t.Fatalf("manifest qids %v, kind %q", tm.QIDs, tm.Kind)
			}
			used, pending, err := UsedQIDs(ctx, store, "p", []string{"run-1", "run-2", "run-3"})
			if err != nil {
				t.Fatal(err)
			}
			if got := used.String(); got != "11827,15033,15034,15068,38170,38173,38601,38628,38726,38739,38794,197595,197597" || !slices.Equal(pending, []string{"run-3"}) {
				t.Fatalf("used %s, pending %v", got, pending)
			}
		})
	}
}

func TestTailWriter(t *testing.T) {
	for _, writes := range [][]int{{3}, {10}, {25}, {4, 4, 4}, {7, 1, 9, 2}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}} {
		tw := tailWriter{ring: make([]byte, 8)}
		var all []byte
		for _, n := range writes {
			p := make([]byte, n)
			for i := range p {
				p[i] = byte(len(all) + i)
			}
			all = append(all, p...)
			tw.Write(p)
		}
		want := all[max(0, len(all)-8):]
		if got := tw.bytes(); !bytes.Equal(got, want) {
			t.Errorf("writes %v: tail %v, want %v", writes, got, want)
		}
	}
}

// BenchmarkPartQIDs reads the QIDs of a 1000-host detections part (the
// simulator's, about 14 MB of XML) from its footer: by seeking (the
// directory store) and streamed through (S3's reader).
func BenchmarkPartQIDs(b *testing.B) {
	s := newSim(100_000)
	defer s.Close()
	file, _ := convertDetections(b, Options{}, simDetections(b, s, 0, 1000))
	dir, err := objstore.NewDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	o, err := dir.Put(ctx, "part.parquet", bytes.NewReader(file), objstore.PutOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for name, store := range map[string]Store{"seek": dir, "stream": noSeek{dir}} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(o.Bytes)
			for b.Loop() {
				q, ok, err := partQIDs(ctx, store, o.Key, o.Bytes)
				if err != nil || !ok || q == "" {
					b.Fatal(q, ok, err)
				}
			}
		})
	}
}
