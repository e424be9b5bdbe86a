package msg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Host IDs travel in the form the Qualys ids parameter takes (the planner
// produces it with qualys.EncodeIDs): comma-separated IDs and a-b ranges.
// This package does not import qualys; it only checks the canonical form,
// counts hosts without expanding ranges, and halves a list for a split.

// maxBatchHosts bounds a batch so that a hostile range cannot pose as a
// batch of a billion hosts.
const maxBatchHosts = 1 << 20

// idSpan is one comma-separated element: a single ID (lo == hi) or a range.
type idSpan struct{ lo, hi uint64 }

func (s idSpan) count() int { return int(s.hi-s.lo) + 1 }

func (s idSpan) appendTo(b []byte) []byte {
	b = strconv.AppendUint(b, s.lo, 10)
	if s.hi != s.lo {
		b = append(b, '-')
		b = strconv.AppendUint(b, s.hi, 10)
	}
	return b
}

// parseIDs checks that s is ascending, non-overlapping IDs and ranges with no
// spaces, and returns its spans and the number of hosts.
func parseIDs(s string) ([]idSpan, int, error) {
	if s == "" {
		return nil, 0, errors.New("no host IDs")
	}
	var spans []idSpan
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		loS, hiS, isRange := strings.Cut(part, "-")
		lo, err := parseID(loS)
		if err != nil {
			return nil, 0, fmt.Errorf("host IDs: %q: %w", part, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseID(hiS); err != nil {
				return nil, 0, fmt.Errorf("host IDs: %q: %w", part, err)
			}
			if hi <= lo {
				return nil, 0, fmt.Errorf("host IDs: %q: range does not ascend", part)
			}
		}
		if n := len(spans); n > 0 && lo <= spans[n-1].hi {
			return nil, 0, fmt.Errorf("host IDs: %q: not above the previous ID %d", part, spans[n-1].hi)
		}
		if hi-lo >= maxBatchHosts || total+int(hi-lo)+1 > maxBatchHosts {
			return nil, 0, fmt.Errorf("host IDs: more than %d hosts", maxBatchHosts)
		}
		span := idSpan{lo, hi}
		spans = append(spans, span)
		total += span.count()
	}
	return spans, total, nil
}

func parseID(s string) (uint64, error) {
	// ParseUint alone would accept "+1"; the canonical form is digits only.
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

// CountIDs returns the number of hosts in an encoded ID list, or an error
// when it is not in canonical form.
func CountIDs(ids string) (int, error) {
	_, n, err := parseIDs(ids)
	return n, err
}

// splitIDs cuts an encoded list after its first `first` hosts.
func splitIDs(spans []idSpan, first int) (string, string) {
	var a, b []byte
	seen := 0
	for _, s := range spans {
		switch {
		case seen >= first:
			b = appendSpan(b, s)
		case seen+s.count() <= first:
			a = appendSpan(a, s)
		default:
			cut := s.lo + uint64(first-seen) - 1
			a = appendSpan(a, idSpan{s.lo, cut})
			b = appendSpan(b, idSpan{cut + 1, s.hi})
		}
		seen += s.count()
	}
	return string(a), string(b)
}

func appendSpan(b []byte, s idSpan) []byte {
	if len(b) > 0 {
		b = append(b, ',')
	}
	return s.appendTo(b)
}
