package qualys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qparams"
)

// DetectionQuery is one batch's Host List Detection request.
type DetectionQuery struct {
	IDs []uint64
	// ProcessedAfter and ProcessedBefore repeat the run's window; zero
	// leaves a side open.
	ProcessedAfter, ProcessedBefore time.Time
	// TruncationLimit is hosts per response; 0 asks for the whole batch in
	// one response (the best practice with explicit ids).
	TruncationLimit int
	// Extra holds the operator's parameters. It may override the defaults
	// below (status, show_reopened_info, …) but not the parameters qfetch
	// controls.
	Extra url.Values
}

// detectionDefaults are the best-practice parameters for a data lake
// (qualys-api.md §3.1): Fixed is included, because closures matter.
var detectionDefaults = url.Values{
	"status":             {"New,Active,Re-Opened,Fixed"},
	"show_reopened_info": {"1"},
}

// Form renders the request parameters.
func (q DetectionQuery) Form() url.Values {
	form := url.Values{}
	for k, v := range detectionDefaults {
		form[k] = append([]string(nil), v...)
	}
	for k, v := range q.Extra {
		form[k] = append([]string(nil), v...)
	}
	for k := range form {
		if qparams.Owned(k) {
			delete(form, k) // IDS would reach Qualys beside ids
		}
	}
	form.Set("action", "list")
	form.Set("output_format", "XML")
	form.Set("truncation_limit", strconv.Itoa(q.TruncationLimit))
	form.Set("ids", hostids.Of(q.IDs).String())
	if !q.ProcessedAfter.IsZero() {
		form.Set("vm_processed_after", FormatTime(q.ProcessedAfter))
	}
	if !q.ProcessedBefore.IsZero() {
		form.Set("vm_processed_before", FormatTime(q.ProcessedBefore))
	}
	return form
}

// Detections posts one detection request and returns the streaming answer.
// onID, if not nil, sees each host ID as its element arrives. Read the
// Response to io.EOF before trusting it. A batch whose answer may be
// truncated is walked with a DetectionPager instead.
func (c *Client) Detections(ctx context.Context, form url.Values, onID func(uint64)) (*Response, error) {
	return c.post(ctx, c.detectionPath(), form, RootDetections, onID, nil)
}

// maxDetectionPages bounds how many truncated pages one batch may take: an
// answer that keeps saying "more" past it is a fault, not data.
const maxDetectionPages = 10000

// DetectionPager walks one batch's detection answer page by page, as
// HostPager walks the Host List: a truncated page's WARNING names the next
// one (its id_min). The caller streams each page where it belongs, so the
// pager hands out the page's Response and learns the next request from it
// once it was read whole.
type DetectionPager struct {
	c        *Client
	path     string // the endpoint: detections, or the KnowledgeBase (KBPager)
	want     answer
	form     url.Values
	cursor   Cursor
	maxPages int
	done     bool
	err      error // a query that must not be sent; Open returns it
}

// DetectionPager starts a walk over the detection answer q asks for.
func (c *Client) DetectionPager(q DetectionQuery) *DetectionPager {
	return &DetectionPager{c: c, path: c.detectionPath(), want: answer{root: RootDetections},
		form: q.Form(), cursor: Cursor{Page: 1}, maxPages: maxDetectionPages}
}

// Cursor reports where the walk stands: Page is the page Open asks for.
func (p *DetectionPager) Cursor() Cursor { return p.cursor }

// Done reports whether the last page has been read.
func (p *DetectionPager) Done() bool { return p.done }

// Open asks for the current page and returns its streaming answer (onID as
// for Detections). Read it to io.EOF, close it, then Advance.
func (p *DetectionPager) Open(ctx context.Context, onID func(uint64)) (*Response, error) {
	if p.err != nil {
		return nil, p.err
	}
	return p.c.call(ctx, p.path, p.form, p.want, onID, nil)
}

// Advance moves past the current page, whose answer resp was read to io.EOF:
// to the page its truncation WARNING names, or to the end. A WARNING that
// cannot be followed, or more pages than any batch should take, is a
// retryable error; a WARNING URL that names another endpoint or no single
// id_min is a permanent one (ErrWarningRefused, see followWarning).
func (p *DetectionPager) Advance(resp *Response) error {
	if resp.v.final != io.EOF {
		// The WARNING comes last: a page not read whole looks like the end.
		return errors.New("advancing past a page not read whole")
	}
	sum := resp.Summary()
	if sum.Warning == nil {
		p.done = true
		return nil
	}
	next, nextMin, err := followWarning(p.form, sum.Warning, p.path, Cursor{IDMin: p.cursor.IDMin, Last: sum.LastID})
	if err != nil {
		return err
	}
	if p.cursor.Page >= p.maxPages {
		return failure.Retryable(fmt.Errorf("more than %d truncated pages", p.maxPages))
	}
	p.form = next
	p.cursor = Cursor{Page: p.cursor.Page + 1, IDMin: nextMin, Last: sum.LastID}
	return nil
}

// Probe makes the call the fleet's fault probe needs: one detection call
// shaped as the real ones (POST action=list with the default output
// options, so the same API and permissions are exercised), asking for one
// host (truncation_limit=1) and naming no ids, so that no batch — a poison
// one least of all — can make the probe fail. The answer is read whole
// through the validator: an error document, a cut body or a malformed answer
// is an error of the same class as on a real call, and a 1999 answer is
// ErrMaintenance. The Limits of the answer are returned too.
//
// It does not use Check: a gateway that serves only the API paths qfetch
// fetches from, or a platform without /msp/about.php, answers 404 there,
// and a probe that fails where the real work succeeds would stop the fleet
// for good.
func (c *Client) Probe(ctx context.Context) (Limits, error) {
	form := DetectionQuery{TruncationLimit: 1}.Form()
	form.Del("ids")
	resp, err := c.Detections(ctx, form, nil)
	if err != nil {
		return NoLimits, fmt.Errorf("probe: %w", err)
	}
	defer resp.Close()
	if _, err := io.Copy(io.Discard, resp); err != nil {
		return resp.Limits, fmt.Errorf("probe: %w", err)
	}
	return resp.Limits, nil
}

// Check calls /msp/about.php, the API's own credential probe: it proves the
// account can log in without spending a Host List or detection call (it
// has a rate limit of its own). The Limits of the answer are returned too.
// The fleet's fault probe uses Probe instead: see there why.
func (c *Client) Check(ctx context.Context) (Limits, error) {
	resp, err := c.post(ctx, "/msp/about.php", url.Values{}, "ABOUT", nil, nil)
	if err != nil {
		return NoLimits, err
	}
	defer resp.Close()
	if _, err := io.Copy(io.Discard, resp); err != nil {
		return resp.Limits, err
	}
	return resp.Limits, nil
}
