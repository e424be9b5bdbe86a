package qualys

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestEncodeIDs(t *testing.T) {
	tests := []struct {
		name string
		in   []uint64
		want string
	}{
		{"empty", nil, ""},
		{"one", []uint64{7}, "7"},
		{"pair stays a list", []uint64{5, 6}, "5,6"},
		{"run of three becomes a range", []uint64{5, 6, 7}, "5-7"},
		{"unsorted with duplicates", []uint64{9, 3, 4, 5, 3, 11}, "3-5,9,11"},
		{"gap of one is not bridged", []uint64{1, 2, 3, 5, 6, 7}, "1-3,5-7"},
		{"above 2^32", []uint64{1 << 33, 1<<33 + 1, 1<<33 + 2}, "8589934592-8589934594"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EncodeIDs(tt.in); got != tt.want {
				t.Fatalf("EncodeIDs(%v) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestEncodeDecodeProperty: decode(encode(ids)) == sorted distinct ids, and
// no range in the encoding covers an ID that was not in the batch.
func TestEncodeDecodeProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 2000 {
		n := r.IntN(300)
		ids := make([]uint64, n)
		next := uint64(1 + r.IntN(1000))
		for i := range ids {
			ids[i] = next
			// Mostly consecutive, sometimes a gap, sometimes a repeat.
			switch r.IntN(10) {
			case 0:
				next += uint64(2 + r.IntN(50))
			case 1:
			default:
				next++
			}
		}
		r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })

		enc := EncodeIDs(ids)
		got, err := DecodeIDs(enc)
		if err != nil {
			t.Fatalf("round %d: DecodeIDs(%q): %v", round, enc, err)
		}
		want := slices.Clone(ids)
		slices.Sort(want)
		want = slices.Compact(want)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: decode(encode) = %v, want %v", round, got, want)
		}
		// Every ID a range expands to must be in the batch: the decode
		// equality above already says so; check the ranges are maximal too.
		for part := range strings.SplitSeq(enc, ",") {
			if lo, hi, ok := strings.Cut(part, "-"); ok && lo == hi {
				t.Fatalf("round %d: degenerate range %q", round, part)
			}
		}
	}
}

func TestDecodeIDsRejects(t *testing.T) {
	for _, in := range []string{"abc", "1,,2", "0", "5-3", "1-", "-4", "1-2000000000", "18446744073709551616"} {
		if _, err := DecodeIDs(in); !errors.Is(err, ErrBadIDs) {
			t.Errorf("DecodeIDs(%q) error = %v, want ErrBadIDs", in, err)
		}
	}
}

func FuzzDecodeIDs(f *testing.F) {
	for _, s := range []string{"1", "1-3,7", "5,6, 9 - 12", "abc", "18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := DecodeIDs(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Fatalf("DecodeIDs(%q) not ascending and distinct: %v", s, ids)
		}
		again, err := DecodeIDs(EncodeIDs(ids))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("round trip of %q: %v, %v", s, again, err)
		}
	})
}
