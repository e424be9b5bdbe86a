package qualys

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFastThenTrickleFails_review17b: a body that brings far more than the
// floor at once, then trickles, is cut in a later window: each window must
// bring the floor on its own, so an early burst buys no credit.
func TestFastThenTrickleFails_review17b(t *testing.T) {
	c := rateClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<"+RootDetections+"><RESPONSE><!--"+strings.Repeat("x", 1<<20))
		trickle(RootDetections, 50*time.Millisecond)(w, r)
	}))
	start := time.Now()
	resp, err := c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp)
	resp.Close()
	checkTooSlow(t, err, time.Since(start))
}
