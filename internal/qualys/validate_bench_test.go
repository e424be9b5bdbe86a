package qualys

import (
	"bytes"
	"encoding/xml"
	"io"
	"runtime"
	"sync"
	"testing"
)

// valBenchDoc is a ~64 MB HLD response: 3,000 hosts with 10 detections
// each, RESULTS from a few hundred bytes to 8 KB.
var valBenchDoc = sync.OnceValue(func() valGenerated {
	return valGenHLD(valGenConfig{Hosts: 3000, Detections: 10, Seed: 7, Warning: true})
})

// valBenchRead is what an HTTP body typically hands over per Read.
const valBenchRead = 32 << 10

// valBench runs copy over the benchmark document and reports MB/s and
// allocations per MB of body.
func valBench(b *testing.B, copy func(r io.Reader, buf []byte) error) {
	doc := valBenchDoc().Body
	buf := make([]byte, valBenchRead)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for b.Loop() {
		if err := copy(bytes.NewReader(doc), buf); err != nil {
			b.Fatal(err)
		}
		n++
	}
	runtime.ReadMemStats(&after)
	mb := float64(n) * float64(len(doc)) / 1e6
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/mb, "allocs/MB")
}

// valPlainCopy hides bytes.Reader's WriterTo and io.Discard's ReaderFrom, so
// that both benchmarks move the bytes through buf in reads of its size.
func valPlainCopy(r io.Reader, buf []byte) error {
	_, err := io.CopyBuffer(struct{ io.Writer }{io.Discard}, struct{ io.Reader }{r}, buf)
	return err
}

func BenchmarkValidatorHLD(b *testing.B) {
	want := valBenchDoc()
	valBench(b, func(r io.Reader, buf []byte) error {
		v := NewValidator(r, ValidatorConfig{Root: RootDetections, OnID: func(uint64) {}})
		if err := valPlainCopy(v, buf); err != nil {
			return err
		}
		if s := v.Summary(); s.Detections != want.Detections || s.Hosts != want.Hosts {
			b.Fatalf("summary %+v", s)
		}
		return nil
	})
}

// BenchmarkValidatorBaselineCopy is the floor: the same bytes, unchecked.
func BenchmarkValidatorBaselineCopy(b *testing.B) {
	valBench(b, valPlainCopy)
}

// BenchmarkValidatorStdlibXML shows why the validator does not use
// encoding/xml: the same check through its Decoder.
func BenchmarkValidatorStdlibXML(b *testing.B) {
	valBench(b, func(r io.Reader, buf []byte) error {
		d := xml.NewDecoder(r)
		for {
			if _, err := d.Token(); err == io.EOF {
				return nil
			} else if err != nil {
				return err
			}
		}
	})
}
