package msg

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qparams"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	b := testBatch("20250301T000000Z-ab12", 17)
	b.Part = "2.1"
	data, err := Encode(b)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	b.V = detectionVersion // detection batches stay version 1
	if !reflect.DeepEqual(got, b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
	if got.Key() != "17.2.1" || got.MsgID() != "20250301T000000Z-ab12.17.2.1" ||
		got.Subject() != "qfetch.batch.20250301T000000Z-ab12" {
		t.Errorf("identity: key %q msgid %q subject %q", got.Key(), got.MsgID(), got.Subject())
	}
}

func TestDecodeRejects(t *testing.T) {
	good := `"run":"r1","batch":3,"after":"2025-02-28T00:00:00Z","before":"2025-03-01T00:00:00Z","ids":"1-3,7","hosts":4`
	tests := []struct {
		name string
		body string
		want string // substring of the error; "" = accepted
	}{
		{"good", `{"v":1,` + good + `}`, ""},
		{"good with unknown field", `{"v":1,"later":true,` + good + `}`, ""},
		{"no after (from the beginning)", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"5","hosts":1}`, ""},
		{"garbled", `{"v":1,"run":`, "not JSON"},
		{"empty", ``, "not JSON"},
		{"not an object", `[1,2]`, "not JSON"},
		{"trailing garbage", `{"v":1,` + good + `} x`, "not JSON"},
		{"missing version", `{` + good + `}`, "missing schema version"},
		{"unknown version", `{"v":3,` + good + `}`, "unknown schema version 3"},
		{"version as string", `{"v":"1",` + good + `}`, "not JSON"},
		{"missing run", `{"v":1,"batch":3,"before":"2025-03-01T00:00:00Z","ids":"5","hosts":1}`, "missing run"},
		{"run with a dot", `{"v":1,"run":"a.b","batch":3,"before":"2025-03-01T00:00:00Z","ids":"5","hosts":1}`, `run "a.b"`},
		{"missing number", `{"v":1,"run":"r1","before":"2025-03-01T00:00:00Z","ids":"5","hosts":1}`, "batch number 0"},
		{"missing before", `{"v":1,"run":"r1","batch":3,"ids":"5","hosts":1}`, "missing window end"},
		{"empty window", `{"v":1,"run":"r1","batch":3,"after":"2025-03-01T00:00:00Z","before":"2025-03-01T00:00:00Z","ids":"5","hosts":1}`, "is empty"},
		{"no ids", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"","hosts":0}`, "no host IDs"},
		{"descending ids", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"7,5","hosts":2}`, "not above"},
		{"overlapping range", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"1-5,4","hosts":6}`, "not above"},
		{"backwards range", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"5-1","hosts":5}`, "does not ascend"},
		{"space in ids", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"1, 2","hosts":2}`, "canonical"},
		{"id zero", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"0","hosts":1}`, "host ID 0"},
		{"huge range", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"1-99999999999","hosts":1}`, "more than"},
		{"host count wrong", `{"v":1,"run":"r1","batch":3,"before":"2025-03-01T00:00:00Z","ids":"1-3","hosts":2}`, "hosts is 2 but IDs hold 3"},
		{"bad part", `{"v":1,"part":"3",` + good + `}`, `part "3"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error containing %q, got %v", tt.want, err)
			}
			if !errors.Is(err, ErrBadBatch) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Fatalf("want permanent ErrBadBatch, got class %v: %v", failure.ClassOf(err), err)
			}
		})
	}
}

func TestEncodeRejectsInvalid(t *testing.T) {
	b := testBatch("r1", 1)
	b.Hosts = 99
	if _, err := Encode(b); !errors.Is(err, ErrBadBatch) {
		t.Fatalf("Encode with a wrong host count: want ErrBadBatch, got %v", err)
	}
}

// expand lists the IDs of a canonical ids string (tests only: ranges are small).
func expand(t *testing.T, s string) []uint64 {
	t.Helper()
	ids, err := hostids.Parse(s)
	if err != nil {
		t.Fatalf("hostids.Parse(%q): %v", s, err)
	}
	return ids.IDs()
}

func TestSplit(t *testing.T) {
	tests := []struct {
		ids         string
		first, last string
	}{
		{"1,2", "1", "2"},
		{"1-4", "1-2", "3-4"},
		{"1-5", "1-2", "3-5"},
		{"1,3,5,7,9", "1,3", "5,7,9"},
		{"10-12,20,30-39", "10-12,20,30-32", "33-39"},
		{"5,100-101", "5", "100-101"},
	}
	for _, tt := range tests {
		t.Run(tt.ids, func(t *testing.T) {
			n, err := hostids.Count(tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			b := testBatch("r1", 17)
			b.IDs, b.Hosts = tt.ids, n
			a, c, err := b.Split()
			if err != nil {
				t.Fatalf("Split: %v", err)
			}
			if a.IDs != tt.first || c.IDs != tt.last {
				t.Fatalf("halves %q, %q; want %q, %q", a.IDs, c.IDs, tt.first, tt.last)
			}
			if a.Key() != "17.1" || c.Key() != "17.2" {
				t.Errorf("keys %q, %q", a.Key(), c.Key())
			}
			for _, h := range []Batch{a, c} {
				if _, err := Encode(h); err != nil {
					t.Errorf("half %s does not encode: %v", h.Key(), err)
				}
			}
			joined := append(expand(t, a.IDs), expand(t, c.IDs)...)
			if !reflect.DeepEqual(joined, expand(t, tt.ids)) {
				t.Errorf("halves hold %v, want %v", joined, expand(t, tt.ids))
			}
			// Splitting again is deterministic and nests the part.
			a2, _, err := a.Split()
			if n >= 4 && (err != nil || a2.Key() != "17.1.1") {
				t.Errorf("second split: %q, %v", a2.Key(), err)
			}
		})
	}
	one := testBatch("r1", 1)
	one.IDs, one.Hosts = "42", 1
	if _, _, err := one.Split(); failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("splitting one host: want a permanent error, got %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, n := range []int{1, 2, 17} {
		b := testBatch("r-"+strconv.Itoa(n), n)
		data, err := Encode(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"v":1,"run":"r","batch":1,"before":"2025-03-01T00:00:00Z","ids":"1-1048576","hosts":1048576}`))
	f.Add([]byte(`{"v":1,"run":"r","batch":1,"before":"2025-03-01T00:00:00Z","ids":"1","hosts":1,"params":{"Action":["purge"],"IDS":["1-9"]}}`))
	f.Add([]byte(`{"v":1,"run":"r","batch":1,"before":"2025-03-01T00:00:00Z","ids":"1","hosts":1,"params":{"status":["Fixed"]}}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrBadBatch) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Fatalf("error is not a permanent ErrBadBatch: %v", err)
			}
			return
		}
		// What decodes asks for nothing the configuration could not.
		if err := qparams.CheckDetection(b.Params); err != nil {
			t.Fatalf("decoded batch carries parameters qfetch refuses: %v", err)
		}
		// What decodes must survive a round trip unchanged.
		again, err := Encode(b)
		if err != nil {
			t.Fatalf("decoded batch does not encode: %v", err)
		}
		b2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if b.Key() != b2.Key() || b.IDs != b2.IDs || b.Hosts != b2.Hosts || !b.Before.Equal(b2.Before) {
			t.Fatalf("round trip changed the batch: %+v vs %+v", b, b2)
		}
	})
}
