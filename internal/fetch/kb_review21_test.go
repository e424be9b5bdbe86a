package fetch

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/qualys"
)

// TestKBDuplicateQIDRefused_review21: an answer that holds a QID twice
// (each asked for) is malformed like one with a foreign QID: stored, it
// gives the kb table two rows of the QID in one pass, and kb_current
// (newest pass per QID, joined on qid and run) then doubles every
// detection of that QID in the documented join.
func TestKBDuplicateQIDRefused_review21(t *testing.T) {
	for _, tc := range []struct {
		name string
		ids  []uint64
		bad  bool
	}{
		{"each once", []uint64{3, 5, 9}, false},
		{"a QID twice in a row", []uint64{3, 5, 5}, true},
		{"a QID again later", []uint64{3, 5, 9, 3}, true},
		{"foreign", []uint64{3, 4}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &kbAnswer{asked: []uint64{3, 5, 9}}
			body := a.guard(strings.NewReader("<x/>"))
			for _, id := range tc.ids {
				a.onID(id)
			}
			_, err := io.ReadAll(body)
			var me *qualys.MalformedError
			if got := errors.As(err, &me); got != tc.bad {
				t.Fatalf("QIDs %v: read error %v, want refused %v", tc.ids, err, tc.bad)
			}
		})
	}
}
