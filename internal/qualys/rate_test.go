package qualys

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// trickle answers with the head of a document, then one byte every step,
// each well inside the idle timeout, until the call ends or for at most
// 10 s; then it ends the document, so that a client without a rate floor
// finishes the call without error.
func trickle(root string, step time.Duration) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		io.WriteString(w, "<"+root+"><RESPONSE>")
		fl.Flush()
		tick := time.NewTicker(step)
		defer tick.Stop()
		end := time.After(10 * time.Second)
		for {
			select {
			case <-r.Context().Done():
				return
			case <-end:
				io.WriteString(w, "</RESPONSE></"+root+">")
				return
			case <-tick.C:
				io.WriteString(w, " ")
				fl.Flush()
			}
		}
	}
}

// rateClient has an idle timeout of 300 ms and a floor of 4 KiB per 500 ms.
func rateClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL, Username: testUser, Password: testPassword,
		IdleTimeout: 300 * time.Millisecond, MinRateBytes: 4 << 10, MinRateWindow: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkTooSlow wants err to be the rate floor's: retryable, ErrTooSlow, and
// a timeout as the worker's split rule tells one (fetch's tooBig).
func checkTooSlow(t *testing.T, err error, took time.Duration) {
	t.Helper()
	if err == nil {
		t.Fatalf("a trickle held the call %s without error", took.Round(time.Millisecond))
	}
	var te interface{ Timeout() bool }
	if !errors.Is(err, ErrTooSlow) || failure.ClassOf(err) != failure.ClassRetryable || !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("err = %v (%v), want a retryable ErrTooSlow that is a timeout", err, failure.ClassOf(err))
	}
	if took > 5*time.Second {
		t.Fatalf("cut after %s, want about one 500ms window", took)
	}
	if !strings.Contains(err.Error(), "under the minimum of 4096") {
		t.Fatalf("err = %v does not say what the floor is", err)
	}
}

// TestDetectionsTrickleFails: one byte every 50 ms beats the idle timeout
// but not the minimum rate (#17.5).
func TestDetectionsTrickleFails(t *testing.T) {
	c := rateClient(t, trickle(RootDetections, 50*time.Millisecond))
	start := time.Now()
	resp, err := c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, resp)
	resp.Close()
	checkTooSlow(t, err, time.Since(start))
}

// TestHostPagerTrickleFails: the planner's Host List call has the same
// floor.
func TestHostPagerTrickleFails(t *testing.T) {
	c := rateClient(t, trickle(RootHostList, 50*time.Millisecond))
	start := time.Now()
	for _, err := range c.HostPager(HostListQuery{}, nil).All(context.Background()) {
		checkTooSlow(t, err, time.Since(start))
		return
	}
	t.Fatal("the walk ended without an ID or an error")
}

// TestSteadyBodyPassesRateFloor: a body that pauses but brings more than
// the floor in every window is read whole, across several windows.
func TestSteadyBodyPassesRateFloor(t *testing.T) {
	c := rateClient(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl := w.(http.Flusher)
		io.WriteString(w, "<"+RootDetections+"><RESPONSE><!--")
		chunk := strings.Repeat("x", 16<<10)
		deadline := time.Now().Add(1500 * time.Millisecond) // three windows
		for time.Now().Before(deadline) {
			io.WriteString(w, chunk)
			fl.Flush()
			time.Sleep(100 * time.Millisecond)
		}
		io.WriteString(w, "--></RESPONSE></"+RootDetections+">")
	}))
	resp, err := c.Detections(context.Background(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	if n, err := io.Copy(io.Discard, resp); err != nil {
		t.Fatalf("after %d bytes: %v", n, err)
	}
}
