package tables

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// countingWriter counts the Parquet bytes written.
type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkConvertDetections converts a realistic 1000-host batch (mean 12
// detections a host, 400-byte RESULTS, QDS and factors) from memory: MB/s
// is XML per second on one core.
func BenchmarkConvertDetections(b *testing.B) {
	s := newSim(100_000)
	defer s.Close()
	body := simDetections(b, s, 0, 1000)
	benchConvert(b, body, func(out io.Writer) convertWriter {
		return NewDetectionWriter(out, Source{Run: "run-1"}, Options{})
	})
}

// convertWriter is what the conversion benchmarks drive.
type convertWriter interface {
	Add(ctx context.Context, name string, r io.Reader) error
	Close() (Stats, error)
}

// benchConvert converts body from memory with a writer of newWriter's, once
// per iteration, and reports the cost per core and the Parquet's size.
func benchConvert(b *testing.B, body []byte, newWriter func(io.Writer) convertWriter) {
	var out countingWriter
	var st Stats
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		out.n = 0
		w := newWriter(&out)
		if err := w.Add(context.Background(), "batch-000001.xml", bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
		var err error
		if st, err = w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	// MB/s is per wall second, which a busy machine lowers; MiB per CPU
	// second (the process's, GC included) is the cost per core.
	b.ReportMetric(float64(b.N)*float64(len(body))/(1<<20)/(cpuTime()-cpu0).Seconds(), "MiB/cpu-s")
	b.ReportMetric(float64(st.Rows), "rows/op")
	b.ReportMetric(100*float64(out.n)/float64(len(body)), "parquet-%-of-xml")
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConvertDetectionsBig streams one big batch (1 GiB of XML by
// default; QFETCH_TABLES_BENCH_MIB changes it) from the simulator over
// loopback into a conversion, and reports the peak heap while it runs:
// the memory bound of a conversion whatever the batch's size
// (QFETCH_TABLES_BENCH_ROWS sets Options.RowGroupRows).
func BenchmarkConvertDetectionsBig(b *testing.B) {
	mib := 1024
	if v, err := strconv.Atoi(os.Getenv("QFETCH_TABLES_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	// About 13 KiB of XML a host with the simulator's defaults.
	hosts := int64(mib) << 20 / (13 << 10)
	var opt Options
	if v, err := strconv.Atoi(os.Getenv("QFETCH_TABLES_BENCH_ROWS")); err == nil {
		opt.RowGroupRows = v
	}
	s := newSim(hosts + 10)
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()
	form := "action=list&show_reopened_info=1&truncation_limit=0&status=New,Active,Re-Opened,Fixed&ids=" + simIDs(s, 0, hosts)

	var out countingWriter
	var st Stats
	var peak, peakLive, base uint64
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+simDetectionPath, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Requested-With", "tables-bench")
		req.SetBasicAuth(s.Username(), s.Password())
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		base = heapLive()
		stop := sampleHeap(&peak, &peakLive)
		out.n = 0
		w := NewDetectionWriter(&out, Source{Run: "run-1"}, opt)
		err = w.Add(context.Background(), "batch-000001.xml", resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		if st, err = w.Close(); err != nil {
			b.Fatal(err)
		}
		stop()
	}
	b.SetBytes(st.XMLBytes)
	b.ReportMetric(float64(st.XMLBytes)/(1<<20), "xml-MiB")
	b.ReportMetric(float64(st.Rows), "rows/op")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakLive)/(1<<20), "peak-live-MiB")
	b.ReportMetric(float64(base)/(1<<20), "base-live-MiB")
	b.ReportMetric(100*float64(out.n)/float64(st.XMLBytes), "parquet-%-of-xml")
}

// sampleHeap records the highest heap in use (live and not yet
// collected) and the highest live heap (as of the last GC) until stop is
// called.
func sampleHeap(peak, peakLive *uint64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			*peak = max(*peak, m.HeapInuse)
			*peakLive = max(*peakLive, heapLive())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// BenchmarkConvertKB converts a KnowledgeBase answer made of the real
// 42-QID sample's VULNs repeated (QFETCH_TABLES_BENCH_KB_REPEAT times, 100 by
// default: about 8 MB, 4200 rows).
func BenchmarkConvertKB(b *testing.B) {
	repeat := 100
	if v, err := strconv.Atoi(os.Getenv("QFETCH_TABLES_BENCH_KB_REPEAT")); err == nil && v > 0 {
		repeat = v
	}
	sample := readSample(b, "kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml")
	open, close := bytes.Index(sample, []byte("<VULN_LIST>"))+len("<VULN_LIST>"), bytes.Index(sample, []byte("</VULN_LIST>"))
	body := slices.Concat(sample[:open], bytes.Repeat(sample[open:close], repeat), sample[close:])
	benchConvert(b, body, func(out io.Writer) convertWriter {
		return NewKBWriter(out, Source{Run: "kb-1"}, Options{})
	})
}
