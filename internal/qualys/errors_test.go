package qualys

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

func readSample(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseErrorDocumentSamples(t *testing.T) {
	tests := []struct {
		file          string
		root          string
		code          int
		text          string
		secondsToWait int
		callsToFinish int
	}{
		{"error_simple-return_1905_bad-ids_recorded_400.xml", "SIMPLE_RETURN", 1905,
			"parameter ids has invalid value: abc123 (neither a positive integer nor a range: abc123)", -1, -1},
		{"error_simple-return_1960_concurrency-limit_mock_409.xml", "SIMPLE_RETURN", 1960,
			"This API cannot be run again until 1 currently running API instance has finished.", -1, 2},
		{"error_simple-return_1965_rate-limit_mock_409.xml", "SIMPLE_RETURN", 1965,
			"This API cannot be run again for another 23 hours, 57 minutes and 54 seconds.", 68928, -1},
		{"error_simple-return_2001_account-expired_recorded_200.xml", "SIMPLE_RETURN", 2001,
			"This account has expired.", -1, -1},
		{"error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml", "GENERIC_RETURN", 999,
			"Internal error. Please contact customer support.", -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			e, ok := parseErrorDocument(readSample(t, tt.file))
			if !ok {
				t.Fatal("not recognised as an error document")
			}
			if e.Root != tt.root || e.Code != tt.code || e.Text != tt.text ||
				e.SecondsToWait != tt.secondsToWait || e.CallsToFinish != tt.callsToFinish {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestParseErrorDocumentNotAnError(t *testing.T) {
	for _, f := range []string{
		"hostlist_details-none_idset_recorded_200.xml",
		"hld_no-matching-hosts_empty-response_recorded_200.xml",
		"hld_1host_3det_multiline-cdata_jupiterone-fixture.xml",
	} {
		if e, ok := parseErrorDocument(readSample(t, f)); ok {
			t.Errorf("%s taken for an error document: %+v", f, e)
		}
	}
	if _, ok := parseErrorDocument([]byte("")); ok {
		t.Error("empty body taken for an error document")
	}
}

func TestParseErrorDocumentHTML(t *testing.T) {
	page := []byte("<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1><br></body></html>")
	e, ok := parseErrorDocument(page)
	if !ok || e.Root != "html" || e.Text != "502 Bad Gateway" {
		t.Fatalf("got %+v, %v", e, ok)
	}
}

func TestClassify(t *testing.T) {
	none := NoLimits
	withToWait := NoLimits
	withToWait.ToWaitSec = 120
	tests := []struct {
		name  string
		e     APIError
		lim   Limits
		class failure.Class
		wait  time.Duration
	}{
		{"1905 bad ids", APIError{Status: 400, Code: 1905, SecondsToWait: -1}, none, failure.ClassPermanent, 0},
		{"1960 concurrency, no hint", APIError{Status: 409, Code: 1960, SecondsToWait: -1}, none, failure.ClassBackPressure, DefaultWaits.Concurrency},
		{"1965 with SECONDS_TO_WAIT", APIError{Status: 409, Code: 1965, SecondsToWait: 68928}, withToWait, failure.ClassBackPressure, 68928 * time.Second},
		{"1965 with header only", APIError{Status: 409, Code: 1965, SecondsToWait: -1}, withToWait, failure.ClassBackPressure, 120 * time.Second},
		{"1965 with nothing", APIError{Status: 409, Code: 1965, SecondsToWait: -1}, none, failure.ClassBackPressure, DefaultWaits.RateLimit},
		{"409 without a document", APIError{Status: 409, SecondsToWait: -1}, none, failure.ClassBackPressure, DefaultWaits.Concurrency},
		{"1999 maintenance", APIError{Status: 503, Code: 1999, SecondsToWait: -1}, none, failure.ClassBackPressure, DefaultWaits.Maintenance},
		{"2001 expired with 200", APIError{Status: 200, Code: 2001, SecondsToWait: -1}, none, failure.ClassFleetWide, 0},
		{"2000 bad login in a stream", APIError{Code: 2000, SecondsToWait: -1}, none, failure.ClassFleetWide, 0},
		{"401 bare", APIError{Status: 401, SecondsToWait: -1}, none, failure.ClassFleetWide, 0},
		{"403 bare", APIError{Status: 403, SecondsToWait: -1}, none, failure.ClassFleetWide, 0},
		{"407 proxy auth", APIError{Status: http.StatusProxyAuthRequired, SecondsToWait: -1}, none, failure.ClassFleetWide, 0},
		{"999 internal", APIError{Status: 200, Code: 999, SecondsToWait: -1}, none, failure.ClassRetryable, 0},
		{"500", APIError{Status: 500, SecondsToWait: -1}, none, failure.ClassRetryable, 0},
		{"503", APIError{Status: 503, SecondsToWait: -1}, none, failure.ClassRetryable, 0},
		{"400 unknown code", APIError{Status: 400, Code: 1234, SecondsToWait: -1}, none, failure.ClassPermanent, 0},
		{"200 unknown code", APIError{Status: 200, Code: 4242, SecondsToWait: -1}, none, failure.ClassRetryable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := classify(tt.e, tt.lim, DefaultWaits)
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("class = %v, want %v", got, tt.class)
			}
			if got := failure.WaitOf(err); got != tt.wait {
				t.Fatalf("wait = %v, want %v", got, tt.wait)
			}
			var api APIError
			if !errors.As(err, &api) || api.Code != tt.e.Code || api.Status != tt.e.Status {
				t.Fatalf("APIError lost: %v", err)
			}
		})
	}
}

func FuzzParseErrorDocument(f *testing.F) {
	for _, name := range []string{
		"error_simple-return_1905_bad-ids_recorded_400.xml",
		"error_simple-return_1965_rate-limit_mock_409.xml",
		"error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml",
		"hostlist_details-none_idset_recorded_200.xml",
	} {
		f.Add(readSample(f, name))
	}
	f.Add([]byte("<html><title>x</title>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, ok := parseErrorDocument(raw)
		if !ok {
			return
		}
		switch e.Root {
		case "SIMPLE_RETURN", "GENERIC_RETURN", "html":
		default:
			t.Fatalf("ok with root %q", e.Root)
		}
		if len(e.Text) > 600 {
			t.Fatalf("text not clipped: %d bytes", len(e.Text))
		}
		_ = classify(e, NoLimits, DefaultWaits).Error()
	})
}
