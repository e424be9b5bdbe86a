package qualys

import (
	"net/url"
	"time"
)

// RootKB is the root element of a KnowledgeBase answer.
const RootKB = "KNOWLEDGE_BASE_VULN_LIST_OUTPUT"

// KBQuery asks the KnowledgeBase for the QIDs of one KB batch.
// (Contract stub: H-api implements it.)
type KBQuery struct {
	// IDs are the QIDs in hostids form ("1-5,9"); the request names them
	// one by one in a POST form (ids=1,2,3,4,5,9), since a QID range in
	// ids is not documented for this API.
	IDs string
	// Details is the details parameter: "All" (the default when empty) or
	// "Basic".
	Details string
	// Extra holds the operator's KnowledgeBase parameters (qparams.CheckKB);
	// parameters qfetch sets win.
	Extra url.Values
}

// KBPager walks the KnowledgeBase answer for q, as DetectionPager walks a
// batch's detections: onID passed to Open sees each VULN's QID. A WARNING
// (never observed, allowed by the DTD) is followed like a detection one.
func (c *Client) KBPager(q KBQuery) *DetectionPager {
	panic("not implemented")
}

// KBListQuery lists the QIDs of one KnowledgeBase pass (details=None: the
// answer is an ID_SET).
type KBListQuery struct {
	// ModifiedAfter is last_modified_after; zero lists the whole
	// KnowledgeBase.
	ModifiedAfter time.Time
	// Extra holds the operator's KnowledgeBase parameters.
	Extra url.Values
	// Resume continues a walk from a cursor a previous one reported.
	Resume Cursor
}

// QIDPager walks the QID listing q asks for, page by page, teeing each page
// through open as HostPager does with Host List pages; its IDs come out
// ascending, so the planner cuts a pass's batches as it cuts a run's.
func (c *Client) QIDPager(q KBListQuery, open OpenPage) *HostPager {
	panic("not implemented")
}
