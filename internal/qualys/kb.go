package qualys

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qparams"
)

// RootKB is the root element of a KnowledgeBase answer.
const RootKB = "KNOWLEDGE_BASE_VULN_LIST_OUTPUT"

// KBQuery asks the KnowledgeBase for the QIDs of one KB batch.
type KBQuery struct {
	// IDs are the QIDs in hostids form ("1-5,9"); the request names them
	// one by one in a POST form (ids=1,2,3,4,5,9), since a QID range in
	// ids is not documented for this API.
	IDs string
	// Details is the details parameter: "All" (the default when empty) or
	// "Basic". When empty, a details in Extra is used: a batch's Params
	// carry the pass's.
	Details string
	// Extra holds the batch's KnowledgeBase parameters (qparams.CheckKB);
	// parameters qfetch sets win.
	Extra url.Values
}

// ErrKBQuery is wrapped, as a permanent error, when a KBQuery cannot be
// sent: its IDs do not parse or are empty (which would ask for the whole
// KnowledgeBase), or it asks for a details other than Basic or All.
var ErrKBQuery = errors.New("knowledge base query refused")

// form renders the request parameters of q.
func (q KBQuery) form() (url.Values, error) {
	set, err := hostids.Parse(q.IDs)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("%w: %w", ErrKBQuery, err))
	}
	if set.Len() == 0 {
		return nil, failure.Permanent(fmt.Errorf("%w: no QIDs", ErrKBQuery))
	}
	details := q.Details
	if details == "" {
		details = q.Extra.Get("details")
	}
	if details == "" {
		details = DetailsAll
	}
	if details != DetailsAll && details != DetailsBasic {
		// None would answer with an ID_SET: a batch stored with no VULN.
		return nil, failure.Permanent(fmt.Errorf("%w: details must be %s or %s", ErrKBQuery, DetailsBasic, DetailsAll))
	}
	form := kbExtra(q.Extra, false)
	form.Set("action", "list")
	form.Set("details", details)
	var ids strings.Builder
	for i, id := range set.IDs() {
		if i > 0 {
			ids.WriteByte(',')
		}
		ids.WriteString(strconv.FormatUint(id, 10))
	}
	form.Set("ids", ids.String())
	return form, nil
}

// kbExtra copies the operator's or batch's parameters without the ones
// qfetch sets, in any case; details (any case) goes too, since the caller
// sets it. listing also drops the show_* output options, which shape VULN
// elements that a details=None listing does not have.
func kbExtra(extra url.Values, listing bool) url.Values {
	form := url.Values{}
	for k, v := range extra {
		switch {
		case qparams.OwnedIn(qparams.KnowledgeBase, k), strings.EqualFold(k, "details"):
		case listing && len(k) >= 5 && strings.EqualFold(k[:5], "show_"):
		default:
			form[k] = slices.Clone(v)
		}
	}
	return form
}

// KBPager walks the KnowledgeBase answer for q, as DetectionPager walks a
// batch's detections: onID passed to Open sees each VULN's QID, and the
// answer must be a VULN_LIST (or hold none: no QID matched). A WARNING
// (never observed, allowed by the DTD) is followed like a detection one. A
// query that cannot be sent (see ErrKBQuery) makes Open fail, permanently.
func (c *Client) KBPager(q KBQuery) *DetectionPager {
	p := &DetectionPager{c: c, path: c.kbPath(), want: answer{root: RootKB, list: kbVulnList},
		cursor: Cursor{Page: 1}, maxPages: maxDetectionPages}
	p.form, p.err = q.form()
	if p.err != nil {
		p.err = fmt.Errorf("qualys %s: %w", p.path, p.err)
	}
	return p
}

// KBListQuery lists the QIDs of one KnowledgeBase pass (details=None: the
// answer is an ID_SET).
type KBListQuery struct {
	// ModifiedAfter is last_modified_after; zero lists the whole
	// KnowledgeBase.
	ModifiedAfter time.Time
	// Extra holds the operator's KnowledgeBase parameters: its filters
	// narrow the listing; details and the show_* output options are left
	// out of it.
	Extra url.Values
	// Resume continues a walk from a cursor a previous one reported.
	Resume Cursor
}

// QIDPager walks the QID listing q asks for, page by page, teeing each page
// through open as HostPager does with Host List pages; its IDs come out
// ascending, so the planner cuts a pass's batches as it cuts a run's.
func (c *Client) QIDPager(q KBListQuery, open OpenPage) *HostPager {
	form := kbExtra(q.Extra, true)
	form.Set("action", "list")
	form.Set("details", DetailsNone)
	if !q.ModifiedAfter.IsZero() {
		form.Set("last_modified_after", FormatTime(q.ModifiedAfter))
	}
	return c.listPager(c.kbPath(), answer{root: RootKB, list: kbIDSetList}, "kb qid list", form, q.Resume, open)
}
