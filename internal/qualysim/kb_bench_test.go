package qualysim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// kbBenchSim holds a 100k-QID KnowledgeBase.
func kbBenchSim() *Sim {
	return New(Config{Seed: 1, Hosts: 1000, KBQIDs: 100_000, ConcurrencyLimit: Off, RateLimit: Off})
}

// BenchmarkGenerateKB writes the whole 100k-QID KB with qfetch's
// parameters (details=All and the show_* flags), without HTTP.
func BenchmarkGenerateKB(b *testing.B) {
	s := kbBenchSim()
	ps, _ := parseParams(kbAllForm, nil)
	req, aerr := parseRequest(epKB, ps)
	if aerr != nil {
		b.Fatal(aerr.text)
	}
	pg := page{base: "http://127.0.0.1:1", path: kbPath, now: s.clock.Now().Unix()}
	buf := make([]byte, 0, flushAt*2)
	var n, vulns int64
	b.ReportAllocs()
	for b.Loop() {
		d := &discardSink{}
		o := &out{buf: buf[:0], sink: d}
		vulns = s.writeKB(o, req.kb, pg)
		n = d.n
	}
	b.SetBytes(n)
	b.ReportMetric(float64(vulns), "vulns/op")
}

// BenchmarkServeKB serves the whole 100k-QID KB with details=All over
// loopback to a client that discards it.
func BenchmarkServeKB(b *testing.B) {
	s := kbBenchSim()
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer s.Close()
	var n int64
	for b.Loop() {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+kbPath, strings.NewReader(kbAllForm))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Requested-With", "bench")
		req.SetBasicAuth(s.Username(), s.Password())
		resp, err := srv.Client().Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%d %v", resp.StatusCode, err)
		}
	}
	b.SetBytes(n)
	if st := s.Stats().Endpoints[KB]; st.VULNs == 0 {
		b.Fatal("no VULNs counted")
	}
}
