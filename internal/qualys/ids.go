package qualys

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// EncodeIDs renders host IDs for the `ids` parameter: ascending, without
// duplicates, and with every run of three or more exactly consecutive IDs
// written as `a-b`. A range never covers an ID outside the list: a wider one
// would also fetch hosts created inside it after planning, and another batch
// owns those.
func EncodeIDs(ids []uint64) string {
	if len(ids) == 0 {
		return ""
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)

	buf := make([]byte, 0, len(sorted)*8)
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		if len(buf) > 0 {
			buf = append(buf, ',')
		}
		switch {
		case j-i >= 2:
			buf = strconv.AppendUint(buf, sorted[i], 10)
			buf = append(buf, '-')
			buf = strconv.AppendUint(buf, sorted[j], 10)
			i = j + 1
		default:
			buf = strconv.AppendUint(buf, sorted[i], 10)
			i++
		}
	}
	return string(buf)
}

// ErrBadIDs is wrapped by DecodeIDs errors.
var ErrBadIDs = errors.New("bad host id list")

// maxDecodedIDs bounds what DecodeIDs expands, so that a hostile `1-1e18`
// cannot exhaust memory.
const maxDecodedIDs = 1 << 20

// DecodeIDs parses an `ids` value (comma-separated IDs and `a-b` ranges) into
// ascending, distinct IDs.
func DecodeIDs(s string) ([]uint64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint64
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseHostID(lo)
		if err != nil {
			return nil, fmt.Errorf("%w: %q: %v", ErrBadIDs, part, err)
		}
		b := a
		if isRange {
			if b, err = parseHostID(hi); err != nil {
				return nil, fmt.Errorf("%w: %q: %v", ErrBadIDs, part, err)
			}
			if b < a {
				return nil, fmt.Errorf("%w: %q: range runs backwards", ErrBadIDs, part)
			}
		}
		if b-a >= maxDecodedIDs || len(out)+int(b-a)+1 > maxDecodedIDs {
			return nil, fmt.Errorf("%w: more than %d ids", ErrBadIDs, maxDecodedIDs)
		}
		for id := a; ; id++ {
			out = append(out, id)
			if id == b {
				break
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func parseHostID(s string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, errors.New("not a positive integer")
	}
	if n == 0 {
		return 0, errors.New("host id 0")
	}
	return n, nil
}
