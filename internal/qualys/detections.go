package qualys

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"time"

	"github.com/qfetch/qfetch/internal/hostids"
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
	for _, k := range controlled {
		form.Del(k)
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
// Response to io.EOF before trusting it; if its Summary carries a truncation
// Warning, NextDetectionForm gives the next page's request.
func (c *Client) Detections(ctx context.Context, form url.Values, onID func(uint64)) (*Response, error) {
	return c.post(ctx, c.detectionPath(), form, RootDetections, onID)
}

// NextDetectionForm turns a truncated detection page's WARNING into the
// next request. last is the last host ID the page held.
func NextDetectionForm(form url.Values, w *Warning, idMin, last uint64) (url.Values, uint64, error) {
	return followWarning(form, w, Cursor{IDMin: idMin, Last: last})
}

// Check calls /msp/about.php, the API's own credential probe: it proves the
// account can log in without spending a Host List or detection call (it
// has a rate limit of its own). The Limits of the answer are returned too.
func (c *Client) Check(ctx context.Context) (Limits, error) {
	resp, err := c.post(ctx, "/msp/about.php", url.Values{}, "ABOUT", nil)
	if err != nil {
		return NoLimits, err
	}
	defer resp.Close()
	if _, err := io.Copy(io.Discard, resp); err != nil {
		return resp.Limits, err
	}
	return resp.Limits, nil
}
