// Package hostids owns the set of host IDs a batch covers and its one text form,
// the Qualys ids parameter ("1-5,7"): parse, encode, count and split.
package hostids

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxHosts bounds what Parse accepts, so that a hostile "1-1e18" can neither
// pose as a batch of a billion hosts nor exhaust memory when expanded.
const MaxHosts = 1 << 20

// ErrInvalid is wrapped by every Parse error.
var ErrInvalid = errors.New("invalid host IDs")

// Set is an ascending set of host IDs kept as the spans it was written with,
// so that String gives back exactly what Parse read. The zero Set is empty.
type Set struct {
	spans []span
	n     int
}

// span is one comma-separated element: a single ID (lo == hi) or a range.
type span struct{ lo, hi uint64 }

func (s span) count() int { return int(s.hi-s.lo) + 1 }

// Of makes the set of ids, in any order and with repeats, in the form the
// planner publishes: every run of three or more exactly consecutive IDs as a
// range, the rest listed. A range never covers an ID outside ids: a wider one
// would also fetch hosts created inside it after planning, and another batch
// owns those.
func Of(ids []uint64) Set {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var s Set
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		if j-i < 2 {
			j = i // a pair stays a list: "5,6" is no longer than "5-6"
		}
		s.spans = append(s.spans, span{sorted[i], sorted[j]})
		i = j + 1
	}
	s.n = len(sorted)
	return s
}

// Parse reads an ids value in its strict form: positive decimal IDs without
// sign, space or leading zero, and lo-hi ranges with lo < hi, every element
// above the one before it, at most MaxHosts in all. The empty string is the
// empty set. Anything else is an error wrapping ErrInvalid that names the bad
// element: a batch is built by the planner, so a loose one is a bug or forged.
func Parse(str string) (Set, error) {
	if str == "" {
		return Set{}, nil
	}
	var s Set
	for part := range strings.SplitSeq(str, ",") {
		loS, hiS, isRange := strings.Cut(part, "-")
		lo, err := parseID(loS)
		if err != nil {
			return Set{}, fmt.Errorf("%w: %q: %w", ErrInvalid, part, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseID(hiS); err != nil {
				return Set{}, fmt.Errorf("%w: %q: %w", ErrInvalid, part, err)
			}
			if hi <= lo {
				return Set{}, fmt.Errorf("%w: %q: range does not ascend", ErrInvalid, part)
			}
		}
		if k := len(s.spans); k > 0 && lo <= s.spans[k-1].hi {
			return Set{}, fmt.Errorf("%w: %q: not above the previous ID %d", ErrInvalid, part, s.spans[k-1].hi)
		}
		if hi-lo >= MaxHosts || s.n+int(hi-lo)+1 > MaxHosts {
			return Set{}, fmt.Errorf("%w: more than %d hosts", ErrInvalid, MaxHosts)
		}
		sp := span{lo, hi}
		s.spans = append(s.spans, sp)
		s.n += sp.count()
	}
	return s, nil
}

func parseID(s string) (uint64, error) {
	// ParseUint alone would take leading zeros, and then one set would have
	// more than one spelling.
	if s == "" || strings.TrimLeft(s, "0123456789") != "" || (len(s) > 1 && s[0] == '0') {
		return 0, errors.New("not a canonical positive integer")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("out of range")
	}
	if n == 0 {
		return 0, errors.New("host ID 0")
	}
	return n, nil
}

// Count returns the number of hosts in an ids value without expanding its
// ranges, or the Parse error.
func Count(str string) (int, error) {
	s, err := Parse(str)
	return s.Len(), err
}

// Len is the number of hosts in s.
func (s Set) Len() int { return s.n }

// String renders s in the ids form; for a parsed set, exactly the input.
func (s Set) String() string {
	buf := make([]byte, 0, len(s.spans)*8)
	for i, sp := range s.spans {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = strconv.AppendUint(buf, sp.lo, 10)
		if sp.hi != sp.lo {
			buf = append(buf, '-')
			buf = strconv.AppendUint(buf, sp.hi, 10)
		}
	}
	return string(buf)
}

// IDs expands s into its ascending IDs.
func (s Set) IDs() []uint64 {
	out := make([]uint64, 0, s.n)
	for _, sp := range s.spans {
		for id := sp.lo; ; id++ {
			out = append(out, id)
			if id == sp.hi {
				break
			}
		}
	}
	return out
}

// Split cuts s after its first `first` hosts (clamped to [0, Len]). A range
// the cut falls inside becomes two; the halves of the same set are always the
// same, which is what lets a repeated split dedupe.
func (s Set) Split(first int) (Set, Set) {
	first = min(max(first, 0), s.n)
	var a, b Set
	seen := 0
	for _, sp := range s.spans {
		switch {
		case seen >= first:
			b.spans = append(b.spans, sp)
		case seen+sp.count() <= first:
			a.spans = append(a.spans, sp)
		default:
			cut := sp.lo + uint64(first-seen) - 1
			a.spans = append(a.spans, span{sp.lo, cut})
			b.spans = append(b.spans, span{cut + 1, sp.hi})
		}
		seen += sp.count()
	}
	a.n, b.n = first, s.n-first
	return a, b
}
