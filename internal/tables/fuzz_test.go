package tables

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/qfetch/qfetch/internal/failure"
)

// fuzzSeeds are the samples, the synthetic documents and a few broken
// ones; chunk picks the read size, so that markup splits across reads.
func fuzzSeeds(f *testing.F, prefix string, extra ...string) {
	paths, err := filepath.Glob(filepath.Join("testdata", "samples", prefix+"*.xml"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(0))
		f.Add(b, uint8(7))
	}
	for _, s := range extra {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
}

// chunked reads at most n bytes at a time (all at once for 0).
type chunked struct {
	r *bytes.Reader
	n int
}

func (c chunked) Read(p []byte) (int, error) {
	if c.n > 0 && len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// fuzzAdd converts data with a writer and checks what any answer must
// be: no panic; an error wraps ErrMalformed and is permanent; a file
// written reads back with the rows it reported, and twice is the same.
func fuzzAdd[T any](t *testing.T, data []byte, chunk uint8, add func(w io.Writer, r io.Reader) (Stats, error)) {
	var out [2]bytes.Buffer
	var st Stats
	for i := range out {
		var err error
		st, err = add(&out[i], chunked{bytes.NewReader(data), int(chunk)})
		if err != nil {
			if !errors.Is(err, ErrMalformed) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Fatalf("error %v (class %v), want ErrMalformed, permanent", err, failure.ClassOf(err))
			}
			return
		}
	}
	if !bytes.Equal(out[0].Bytes(), out[1].Bytes()) {
		t.Fatal("two conversions differ")
	}
	rows, err := parquet.Read[T](bytes.NewReader(out[0].Bytes()), int64(out[0].Len()))
	if err != nil {
		t.Fatalf("the file does not read back: %v", err)
	}
	if int64(len(rows)) != st.Rows {
		t.Fatalf("%d rows read, %d written", len(rows), st.Rows)
	}
}

func FuzzDetections(f *testing.F) {
	fuzzSeeds(f, "hld_", tagsDetections,
		`<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><HOST_LIST><HOST><ID>1</ID><DETECTION_LIST><DETECTION><QID>2</QID><QDS severity="HIGH`,
		`<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><HOST_LIST><HOST><ID>1</ID><DETECTION_LIST><DETECTION><QID>2</QID><QDS_FACTORS><QDS_FACTOR name='&#x41;&lt;'>v</QDS_FACTOR></QDS_FACTORS></DETECTION></DETECTION_LIST></HOST></HOST_LIST></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`,
		`<SIMPLE_RETURN><RESPONSE><CODE>1905</CODE></RESPONSE></SIMPLE_RETURN>`)
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzAdd[DetectionRow](t, data, chunk, func(w io.Writer, r io.Reader) (Stats, error) {
			d := NewDetectionWriter(w, Source{Run: "r"}, Options{RowGroupRows: 3})
			if err := d.Add(context.Background(), "k", r); err != nil {
				return Stats{}, err
			}
			return d.Close()
		})
	})
}

func FuzzHosts(f *testing.F) {
	fuzzSeeds(f, "hostlist_", tagsHostList,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>5</ID><ID_RANGE>7-9</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>1-99999999999</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		strings.Replace(tagsHostList, "<ASSET_GROUP_IDS>1, 2,3", "<ASSET_GROUP_IDS>1,,x", 1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		fuzzAdd[HostRow](t, data, chunk, func(w io.Writer, r io.Reader) (Stats, error) {
			h := NewHostWriter(w, Source{Run: "r"}, Options{RowGroupRows: 3})
			if err := h.Add(context.Background(), "k", r); err != nil {
				return Stats{}, err
			}
			return h.Close()
		})
	})
}
