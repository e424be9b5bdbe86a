package hostids

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
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
			s := Of(tt.in)
			if got := s.String(); got != tt.want {
				t.Fatalf("Of(%v) = %q, want %q", tt.in, got, tt.want)
			}
			if n := len(slices.Compact(slices.Sorted(slices.Values(tt.in)))); s.Len() != n {
				t.Fatalf("Of(%v).Len() = %d, want %d", tt.in, s.Len(), n)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		n     int
		wantE string // substring of the error; "" = accepted
	}{
		{"", 0, ""},
		{"7", 1, ""},
		{"1-3,7", 4, ""},
		{"5,6", 2, ""},
		{"1-2", 2, ""}, // what a split of 1-4 writes
		{"1-3,4", 4, ""},
		{"18446744073709551615", 1, ""},
		{"1-1048576", MaxHosts, ""},
		{"abc", 0, "canonical"},
		{"1,,2", 0, "canonical"},
		{",1", 0, "canonical"},
		{"1,", 0, "canonical"},
		{"0", 0, "host ID 0"},
		{"0-3", 0, "host ID 0"},
		{"5-3", 0, "does not ascend"},
		{"5-5", 0, "does not ascend"},
		{"1-", 0, "canonical"},
		{"-4", 0, "canonical"},
		{"1-2-3", 0, "canonical"},
		{"+1", 0, "canonical"},
		{"01", 0, "canonical"},
		{"1, 2", 0, "canonical"},
		{" 1", 0, "canonical"},
		{"5 - 12", 0, "canonical"},
		{"7,5", 0, "not above"},
		{"1-5,4", 0, "not above"},
		{"3,3", 0, "not above"},
		{"1-2000000000", 0, "more than"},
		{"1-99999999999", 0, "more than"},
		{"1-1048577", 0, "more than"},
		{"1-1048576,2000000", 0, "more than"},
		{"18446744073709551616", 0, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := Parse(tt.in)
			if tt.wantE != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantE) {
					t.Fatalf("Parse(%q) error = %v, want ErrInvalid containing %q", tt.in, err, tt.wantE)
				}
				if n, err := Count(tt.in); n != 0 || !errors.Is(err, ErrInvalid) {
					t.Fatalf("Count(%q) = %d, %v; want 0, ErrInvalid", tt.in, n, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if s.Len() != tt.n || s.String() != tt.in {
				t.Fatalf("Parse(%q) = %q with %d hosts, want itself with %d", tt.in, s.String(), s.Len(), tt.n)
			}
			if n, err := Count(tt.in); n != tt.n || err != nil {
				t.Fatalf("Count(%q) = %d, %v", tt.in, n, err)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		ids        string
		first      int
		head, tail string
	}{
		{"1,2", 1, "1", "2"},
		{"1-4", 2, "1-2", "3-4"},
		{"1-5", 2, "1-2", "3-5"},
		{"1-5", 1, "1", "2-5"},
		{"1-5", 4, "1-4", "5"},
		{"1,3,5,7,9", 2, "1,3", "5,7,9"},
		{"10-12,20,30-39", 7, "10-12,20,30-32", "33-39"},
		{"5,100-101", 1, "5", "100-101"},
		{"1-3", 0, "", "1-3"},
		{"1-3", 3, "1-3", ""},
		{"1-3", 9, "1-3", ""},
		{"1-3", -1, "", "1-3"},
	}
	for _, tt := range tests {
		t.Run(tt.ids, func(t *testing.T) {
			s, err := Parse(tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			a, b := s.Split(tt.first)
			if a.String() != tt.head || b.String() != tt.tail {
				t.Fatalf("Split(%d) = %q, %q; want %q, %q", tt.first, a, b, tt.head, tt.tail)
			}
			checkHalves(t, s, a, b)
		})
	}
}

// checkHalves: the halves hold s's IDs in order, their counts add up, and
// each is a valid, re-parseable set.
func checkHalves(t *testing.T, s, a, b Set) {
	t.Helper()
	if a.Len()+b.Len() != s.Len() || len(a.IDs()) != a.Len() || len(b.IDs()) != b.Len() {
		t.Fatalf("halves of %q count %d + %d", s, a.Len(), b.Len())
	}
	if !slices.Equal(slices.Concat(a.IDs(), b.IDs()), s.IDs()) {
		t.Fatalf("halves %q, %q do not join to %q", a, b, s)
	}
	for _, h := range []Set{a, b} {
		again, err := Parse(h.String())
		if err != nil || again.String() != h.String() || again.Len() != h.Len() {
			t.Fatalf("half %q does not parse back: %q, %v", h, again, err)
		}
	}
}

// TestOfParseProperty: Parse(Of(ids)) holds the sorted distinct ids, and no
// range in the encoding is degenerate.
func TestOfParseProperty(t *testing.T) {
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

		enc := Of(ids).String()
		got, err := Parse(enc)
		if err != nil {
			t.Fatalf("round %d: Parse(%q): %v", round, enc, err)
		}
		want := slices.Clone(ids)
		slices.Sort(want)
		want = slices.Compact(want)
		if !slices.Equal(got.IDs(), want) || got.Len() != len(want) {
			t.Fatalf("round %d: decode(encode) = %v, want %v", round, got.IDs(), want)
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

func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "1", "1-3,7", "5,6, 9 - 12", "abc", "18446744073709551615", "1-1048576", "10-12,20,30-39"} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, str string, first int) {
		s, err := Parse(str)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) error does not wrap ErrInvalid: %v", str, err)
			}
			return
		}
		// encode(decode(s)) == s: the strict form has one spelling.
		if s.String() != str {
			t.Fatalf("Parse(%q).String() = %q", str, s)
		}
		ids := s.IDs()
		if n, _ := Count(str); n != s.Len() || len(ids) != s.Len() || s.Len() > MaxHosts {
			t.Fatalf("%q: Count %d, Len %d, %d IDs", str, n, s.Len(), len(ids))
		}
		if !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != len(ids) {
			t.Fatalf("Parse(%q) not ascending and distinct", str)
		}
		// The planner's encoding of the same IDs is the same set.
		again, err := Parse(Of(ids).String())
		if err != nil || !slices.Equal(again.IDs(), ids) || again.Len() != s.Len() {
			t.Fatalf("round trip of %q through Of: %v", str, err)
		}
		if s.Len() > 0 {
			a, b := s.Split(first % (s.Len() + 1))
			checkHalves(t, s, a, b)
		}
	})
}
