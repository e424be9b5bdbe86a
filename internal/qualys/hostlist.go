package qualys

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qparams"
)

// HostListQuery selects the hosts of one run.
type HostListQuery struct {
	// ProcessedAfter and ProcessedBefore bound vm_processed_after and
	// vm_processed_before; a zero time leaves that side open.
	ProcessedAfter, ProcessedBefore time.Time
	// PageSize is the truncation_limit: hosts per page; 0 asks for all in one.
	PageSize int
	// Details is the details parameter, one of HostListDetails; "" asks
	// for Basic, as Qualys does when it is not sent. None pages are the
	// smallest (IDs only); Basic and All describe each host.
	Details string
	// Extra holds the operator's filters (ag_ids, use_tags, …). Parameters
	// qfetch controls are set after it and win.
	Extra url.Values
	// Resume continues a pager from a cursor a previous one reported.
	Resume Cursor
}

// Cursor is where a Host List walk stands: the page being read, the id_min
// that page was requested with, and the last ID handed out.
type Cursor struct {
	Page  int    // 1-based number of the current page
	IDMin uint64 // id_min the current page was requested with; 0 for the first
	Last  uint64 // last ID yielded; IDs up to it are not yielded again
}

// Host List detail levels qfetch asks for (the details parameter; the
// "/AGs" variants are not offered: asset groups are All's ASSET_GROUP_IDS).
const (
	DetailsNone  = "None"
	DetailsBasic = "Basic"
	DetailsAll   = "All"
)

// HostListDetails lists the detail levels, cheapest first.
var HostListDetails = []string{DetailsNone, DetailsBasic, DetailsAll}

// PageWriter receives the raw bytes of one Host List page as they arrive.
// Close is called once the page arrived whole and valid, with the number of
// host IDs it holds, and must return only when the page is stored (and
// recorded); Abort discards it.
type PageWriter interface {
	io.Writer
	Close(hosts int) error
	Abort(cause error)
}

// OpenPage gives the writer for page number page (1-based); nil tees nothing.
type OpenPage func(ctx context.Context, page int) (PageWriter, error)

// HostPager walks the Host List page by page, or a KnowledgeBase QID
// listing (QIDPager): both are ID listings paged by id_min.
type HostPager struct {
	c      *Client
	path   string
	want   answer
	what   string // names the listing in errors: "host list", "kb qid list"
	form   url.Values
	open   OpenPage
	cursor Cursor
	done   bool
}

// FormatTime renders a time as Qualys date parameters want it.
func FormatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

// HostPager starts a walk over the hosts q selects, teeing each raw page to
// open (nil: no tee).
func (c *Client) HostPager(q HostListQuery, open OpenPage) *HostPager {
	form := url.Values{}
	for k, v := range q.Extra {
		if !qparams.Owned(k) { // the operator's extras cannot override ours, in any case
			form[k] = append([]string(nil), v...)
		}
	}
	form.Set("action", "list")
	form.Set("details", cmp.Or(q.Details, DetailsBasic))
	form.Set("truncation_limit", strconv.Itoa(q.PageSize))
	if !q.ProcessedAfter.IsZero() {
		form.Set("vm_processed_after", FormatTime(q.ProcessedAfter))
	}
	if !q.ProcessedBefore.IsZero() {
		form.Set("vm_processed_before", FormatTime(q.ProcessedBefore))
	}
	return c.listPager(c.hostListPath(), answer{root: RootHostList}, "host list", form, q.Resume, open)
}

// listPager starts a walk over an ID listing at path, resumed from cur.
func (c *Client) listPager(path string, want answer, what string, form url.Values, cur Cursor, open OpenPage) *HostPager {
	if cur.Page < 1 {
		cur.Page = 1
	}
	if cur.IDMin > 0 {
		form.Set("id_min", strconv.FormatUint(cur.IDMin, 10))
	}
	return &HostPager{c: c, path: path, want: want, what: what, form: form, open: open, cursor: cur}
}

// Cursor reports where the walk stands. Inside the loop body of All it
// includes the ID just yielded.
func (p *HostPager) Cursor() Cursor { return p.cursor }

// Done reports whether the last page has been read.
func (p *HostPager) Done() bool { return p.done }

// All yields host IDs in ascending order while each page streams in. After
// it yields an error, continuing the loop retries the current page from its
// start (so the tee stays whole) without yielding any ID twice; breaking
// out stops the walk. The caller decides whether and when to retry, by the
// error's class.
func (p *HostPager) All(ctx context.Context) iter.Seq2[uint64, error] {
	return func(yield func(uint64, error) bool) {
		for !p.done {
			more, err := p.page(ctx, yield)
			if !more {
				return
			}
			if err != nil && !yield(0, err) {
				return
			}
		}
	}
}

// idSpan is the host IDs lo to hi, both included.
type idSpan struct{ lo, hi uint64 }

// errStopped means the consumer broke out of the loop.
var errStopped = errors.New("stopped by caller")

// page reads the current page. more is false when the consumer stopped.
func (p *HostPager) page(ctx context.Context, yield func(uint64, error) bool) (more bool, err error) {
	var pw PageWriter
	if p.open != nil {
		if pw, err = p.open(ctx, p.cursor.Page); err != nil {
			return true, fmt.Errorf("qualys %s page %d: opening the page writer: %w", p.what, p.cursor.Page, err)
		}
	}
	abort := func(cause error) {
		if pw != nil {
			pw.Abort(cause)
		}
	}

	// pending holds the IDs of one Read as the spans the page wrote them
	// in: a range is taken one ID at a time as the consumer asks, so a
	// small page naming millions of hosts costs no memory (#17.6). Its
	// length is bounded by the elements one Read can hold.
	var pending []idSpan
	last := p.cursor.Last // IDs up to it were yielded before a retry of this page
	keep := func(lo, hi uint64) {
		if hi > last {
			pending = append(pending, idSpan{max(lo, last+1), hi})
		}
	}
	resp, err := p.c.call(ctx, p.path, p.form, p.want,
		func(id uint64) { keep(id, id) }, keep)
	if err != nil {
		abort(err)
		return true, fmt.Errorf("%s page %d: %w", p.what, p.cursor.Page, err)
	}
	defer resp.Close()

	buf := make([]byte, 64<<10)
	for {
		n, rerr := resp.Read(buf)
		if n > 0 && pw != nil {
			if _, werr := pw.Write(buf[:n]); werr != nil {
				abort(werr)
				return true, fmt.Errorf("%s page %d: storing the page: %w", p.what, p.cursor.Page, werr)
			}
		}
		for _, s := range pending {
			if s.lo <= p.cursor.Last {
				// The validator checks well-formedness, not order; a
				// repeat or a step back would break every cursor.
				err := failure.Retryable(fmt.Errorf("%s page %d: id %d after %d: IDs out of order", p.what, p.cursor.Page, s.lo, p.cursor.Last))
				abort(err)
				return true, err
			}
			for id := s.lo; ; id++ {
				p.cursor.Last = id
				if !yield(id, nil) {
					abort(errStopped)
					return false, nil
				}
				if id == s.hi {
					break
				}
			}
		}
		pending = pending[:0]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			abort(rerr)
			return true, fmt.Errorf("%s page %d: %w", p.what, p.cursor.Page, rerr)
		}
	}

	if pw != nil {
		if err := pw.Close(resp.Summary().Hosts); err != nil {
			return true, fmt.Errorf("%s page %d: storing the page: %w", p.what, p.cursor.Page, err)
		}
	}
	w := resp.Summary().Warning
	if w == nil {
		p.done = true
		return true, nil
	}
	next, nextMin, err := followWarning(p.form, w, p.path, p.cursor)
	if err != nil {
		return true, fmt.Errorf("%s page %d: %w", p.what, p.cursor.Page, err)
	}
	p.form = next
	p.cursor.Page++
	p.cursor.IDMin = nextMin
	return true, nil
}

// ErrWarningRefused is wrapped when a truncation WARNING's URL points at
// another endpoint or carries no single usable id_min: following it could
// send a request qfetch never meant to make.
var ErrWarningRefused = errors.New("truncation WARNING URL refused")

// followWarning turns a truncation WARNING of the page read from path into
// the next page's form: our own parameters with the URL's id_min, and
// nothing else from it.
//
// The URL is an answer's text, so it steers paging and nothing more. Its
// other parameters are ignored rather than refused: Qualys repeats every
// parameter of the request there, in its own spelling, so comparing them
// would refuse genuine answers, and ignoring them means action, ids or
// anything else it names is never sent. Its host is ignored too (the next
// request goes to our configured server, whatever host Qualys calls
// itself). A URL naming another path is refused as permanent: it is not
// about this call, and asking again gets the same answer.
func followWarning(form url.Values, w *Warning, path string, cur Cursor) (url.Values, uint64, error) {
	if w.Code != CodeTruncated {
		return nil, 0, failure.Retryable(fmt.Errorf("unexpected WARNING code %d: %s", w.Code, w.Text))
	}
	u, err := url.Parse(w.URL)
	if err != nil {
		return nil, 0, failure.Retryable(fmt.Errorf("truncation WARNING URL unreadable: %w", stripURL(err)))
	}
	if strings.TrimSuffix(u.Path, "/") != strings.TrimSuffix(path, "/") {
		return nil, 0, failure.Permanent(fmt.Errorf("%w: it names path %q, not %s, the path called", ErrWarningRefused, clip(u.Path, 100), path))
	}
	// Parameters that fail to decode are among those ignored; only id_min
	// must be readable.
	q, _ := url.ParseQuery(u.RawQuery)
	mins := q["id_min"]
	if len(mins) != 1 {
		return nil, 0, failure.Permanent(fmt.Errorf("%w: it holds %d id_min values, want one", ErrWarningRefused, len(mins)))
	}
	nextMin, ok := valParseID([]byte(mins[0]))
	if !ok {
		return nil, 0, failure.Permanent(fmt.Errorf("%w: id_min %q is not a positive integer", ErrWarningRefused, clip(mins[0], 40)))
	}
	if nextMin <= cur.IDMin || nextMin <= cur.Last {
		return nil, 0, failure.Retryable(fmt.Errorf("truncation WARNING does not advance: id_min %d after id %d", nextMin, cur.Last))
	}
	next := make(url.Values, len(form)+1)
	for k, v := range form {
		next[k] = v
	}
	next.Set("id_min", strconv.FormatUint(nextMin, 10))
	return next, nextMin, nil
}
