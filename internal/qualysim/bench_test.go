package qualysim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchSim is a realistic subscription: mean 12 detections per host,
// 400-byte RESULTS, no limits.
func benchSim(hosts int64) *Sim {
	return New(Config{Seed: 1, Hosts: hosts, ConcurrencyLimit: Off, RateLimit: Off})
}

// batchIDs is a worker's batch: n host IDs as a comma list.
func batchIDs(s *Sim, first, n int64) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		if i > first {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(s.HostID(i), 10))
	}
	return b.String()
}

func batchForm(s *Sim, first, n int64) string {
	return "action=list&show_reopened_info=1&truncation_limit=0&status=New,Active,Re-Opened,Fixed&ids=" + batchIDs(s, first, n)
}

// BenchmarkGenerateDetections is the generator alone, without HTTP.
func BenchmarkGenerateDetections(b *testing.B) {
	s := benchSim(100_000)
	ps, _ := parseParams(batchForm(s, 0, 1000), nil)
	req, aerr := parseRequest(epDetection, ps)
	if aerr != nil {
		b.Fatal(aerr.text)
	}
	pg := page{base: "http://127.0.0.1:1", path: detectionPath, now: s.clock.Now().Unix()}
	buf := make([]byte, 0, flushAt*2)
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		d := &discardSink{}
		o := &out{buf: buf[:0], sink: d}
		s.writeDetections(o, req, pg)
		n = d.n
	}
	b.SetBytes(n)
}

// BenchmarkServeDetections serves 1000-host detection batches over
// loopback to clients that read and discard them: the simulator's ceiling
// as a benchmark peer for qfetch.
func BenchmarkServeDetections(b *testing.B) {
	s := benchSim(100_000)
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := batchForm(s, 0, 1000)
	fetch := func(tb testing.TB) int64 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+detectionPath, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Requested-With", "bench")
		req.SetBasicAuth(s.Username(), s.Password())
		resp, err := client.Do(req)
		if err != nil {
			tb.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			tb.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		return n
	}
	size := fetch(b)
	for _, conns := range []int{1, 10} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			b.SetBytes(size)
			if conns == 1 {
				for b.Loop() {
					fetch(b)
				}
				return
			}
			b.SetParallelism((conns + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					fetch(b)
				}
			})
		})
	}
}

// BenchmarkMemory10M reports the process's memory while a 10M-host
// simulator serves a 100,000-ID Host List page and a 1000-host detection
// batch. Nothing per host is stored, so it stays flat.
func BenchmarkMemory10M(b *testing.B) {
	s := benchSim(10_000_000)
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	get := func(path, form string) int64 {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Requested-With", "bench")
		req.SetBasicAuth(s.Username(), s.Password())
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, _ := io.Copy(io.Discard, resp.Body)
		return n
	}
	var peak runtime.MemStats
	sample := func() {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak.HeapInuse = max(peak.HeapInuse, m.HeapInuse)
		peak.Sys = max(peak.Sys, m.Sys)
	}
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				sample()
			}
		}
	}()
	var bytes int64
	for b.Loop() {
		// A page from the middle: id_min found by binary search, not a scan.
		bytes = get(hostListPath, "action=list&details=None&truncation_limit=100000&id_min="+strconv.FormatUint(s.HostID(5_000_000), 10))
		bytes += get(detectionPath, batchForm(s, 9_000_000, 1000))
	}
	close(done)
	<-sampled
	sample()
	b.SetBytes(bytes)
	b.ReportMetric(float64(peak.HeapInuse)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peak.Sys)/(1<<20), "peak-sys-MiB")
	if rss := vmHWM(); rss > 0 {
		b.ReportMetric(rss, "peak-RSS-MiB")
	}
}

// vmHWM is the process's peak resident set in MiB (Linux), or 0.
func vmHWM() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
