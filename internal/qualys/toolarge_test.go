package qualys

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

// TestOversizedRequestIsNotFleetWide: a proxy refusing this request's size
// (413 body too large, 414 URI too long, 431 headers too large) judges this
// request, not every call: it is retryable and marked ErrTooLarge, so the
// worker splits the batch instead of pausing the fleet for ever.
func TestOversizedRequestIsNotFleetWide(t *testing.T) {
	for _, status := range []int{http.StatusRequestEntityTooLarge, http.StatusRequestURITooLong} {
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = r.ParseForm()
			if len(r.Form.Get("ids")) > 100 {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(status)
				_, _ = w.Write([]byte("<html><body>request too large</body></html>"))
				return
			}
			w.Header().Set("Content-Type", "text/xml")
			_, _ = w.Write([]byte(`<?xml version="1.0"?><ABOUT><API-VERSION>1</API-VERSION></ABOUT>`))
		}))
		c, err := New(Config{BaseURL: proxy.URL, Username: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Check(t.Context()); err != nil {
			t.Fatalf("%d: the probe fails too: %v", status, err)
		}
		ids := strings.Repeat("1234567,", 100)
		_, err = c.Detections(t.Context(), url.Values{"ids": {ids}}, nil)
		if got := failure.ClassOf(err); got != failure.ClassRetryable || !errors.Is(err, ErrTooLarge) {
			t.Errorf("%d for one oversized request: class %v, ErrTooLarge %v; want retryable and marked too large: %v",
				status, got, errors.Is(err, ErrTooLarge), err)
		}
		proxy.Close()
	}
}
