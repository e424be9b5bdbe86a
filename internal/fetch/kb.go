package fetch

import (
	"fmt"
	"io"
	"slices"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/runid"
)

// A KnowledgeBase batch (msg.KindKB) is a batch of a KB pass, a run whose
// ID says so (runid.IsKB): the same claims, leases, fleet cap, verdicts,
// splits and dead letters as a detection batch; only the call differs (the
// QIDs it names go to the KnowledgeBase) and its result adds the QIDs the
// answer held, which the pass's manifest adds up into the QIDs qfetch knows.

// KnowledgeBase is the part of the Qualys client a worker asks for a
// KnowledgeBase batch with.
type KnowledgeBase interface {
	// KBPager walks the KnowledgeBase answer for a batch's QIDs; onID
	// passed to its Open sees each VULN's QID.
	KBPager(q qualys.KBQuery) *qualys.DetectionPager
}

// kindMismatch says what is wrong when b's kind is not its run's: a KB
// batch of a detection run would ask the KnowledgeBase and write under
// runs/, a detection batch of a KB pass would ask detections for QIDs and
// write under kb/ (I7). Only a forged or misrouted message is either.
func kindMismatch(b msg.Batch) string {
	switch {
	case b.Kind == msg.KindKB && !runid.IsKB(b.Run):
		return "a KnowledgeBase batch names a detection run"
	case b.Kind == "" && runid.IsKB(b.Run):
		return "a detection batch names a KnowledgeBase pass"
	case b.Kind != "" && b.Kind != msg.KindKB:
		return fmt.Sprintf("batch kind %q is unknown", b.Kind)
	}
	return ""
}

// kbAnswer follows a KnowledgeBase batch's answer: the QIDs it returns,
// each of which the batch must have asked for.
type kbAnswer struct {
	asked   []uint64 // ascending: the batch's QIDs
	got     []uint64 // the answer's QIDs, pages after pages
	vulns   int      // VULNs of the answer, on every page so far
	counted int      // vulns up to the current page
	foreign uint64   // the first QID not asked for; 0 while none
	// seen marks the asked QIDs the answer held: one held twice would be
	// two rows of a QID in one pass, which kb_current joins twice.
	seen  []bool
	twice uint64 // the first QID the answer held twice; 0 while none
}

// onID runs inside the answer's Read, for each VULN's QID.
func (a *kbAnswer) onID(id uint64) {
	a.vulns++
	i, ok := slices.BinarySearch(a.asked, id)
	if !ok {
		if a.foreign == 0 {
			a.foreign = id
		}
		return
	}
	if a.seen == nil {
		a.seen = make([]bool, len(a.asked))
	}
	if a.seen[i] {
		if a.twice == 0 {
			a.twice = id
		}
		return
	}
	a.seen[i] = true
	a.got = append(a.got, id)
}

// pageVulns is the VULNs of the page read since the last call.
func (a *kbAnswer) pageVulns() int {
	n := a.vulns - a.counted
	a.counted = a.vulns
	return n
}

// guard fails the read of r that brought a QID the batch did not ask for,
// or one the answer held already, so that the upload fed from it is
// aborted and nothing of the answer is stored (I2): such an answer is
// malformed, as one cut short is, and retried and charged the same way.
func (a *kbAnswer) guard(r io.Reader) io.Reader { return guarded{r: r, a: a} }

type guarded struct {
	r io.Reader
	a *kbAnswer
}

func (g guarded) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if g.a.foreign != 0 {
		return 0, failure.Retryable(&qualys.MalformedError{Endpoint: "knowledge_base",
			Reason: fmt.Sprintf("QID %d is in the answer but not in the batch", g.a.foreign)})
	}
	if g.a.twice != 0 {
		return 0, failure.Retryable(&qualys.MalformedError{Endpoint: "knowledge_base",
			Reason: fmt.Sprintf("QID %d is in the answer twice", g.a.twice)})
	}
	return n, err
}
