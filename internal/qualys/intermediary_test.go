package qualys

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

// TestIntermediaryAnswersAreFleetWide: answers that are not
// Qualys' own (no Qualys document, no code) fail every batch alike, so they
// must not be classified as permanent (dead-letter at once) or plain
// retryable (dead-letter after MaxFailures): a proxy's 400 page, or a base
// URL whose host does not resolve.
func TestIntermediaryAnswersAreFleetWide(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte("<html><head><title>400 Bad Request</title></head><body>The proxy rejected the request</body></html>"))
	}))
	defer proxy.Close()
	for name, base := range map[string]string{
		"proxy 400 page":    proxy.URL,
		"unresolvable host": "https://qualysapi.no-such-host.invalid",
	} {
		c, err := New(Config{BaseURL: base, Username: "u", Password: "p"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Detections(t.Context(), url.Values{"ids": {"1"}}, nil)
		if got := failure.ClassOf(err); got != failure.ClassFleetWide {
			t.Errorf("%s: class %v, want fleet-wide (every batch fails alike): %v", name, got, err)
		}
	}
}
