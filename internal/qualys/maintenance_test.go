package qualys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// maintenanceDoc is a 1999 answer in the shape of the recorded 2001 sample:
// no 1999 answer has been recorded in public (qualys-api.md §5.3), so its
// code and the vendor's published text are put into the recorded document.
func maintenanceDoc(t *testing.T) []byte {
	t.Helper()
	b := readSample(t, "error_simple-return_2001_account-expired_recorded_200.xml")
	b = bytes.Replace(b, []byte("<CODE>2001</CODE>"), []byte("<CODE>1999</CODE>"), 1)
	b = bytes.Replace(b, []byte("This account has expired."),
		[]byte("We are performing scheduled maintenance on our System. We apologize for any inconvenience. Please try again later."), 1)
	if !bytes.Contains(b, []byte("<CODE>1999</CODE>")) {
		t.Fatal("sample changed: no CODE to replace")
	}
	return b
}

// TestErrMaintenance: a 1999 answer matches ErrMaintenance wherever it
// arrives, keeps its back-pressure class and wait; no other answer matches.
func TestErrMaintenance(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   func(t *testing.T) []byte
		maint  bool
		class  failure.Class
		wait   time.Duration
	}{
		{"1999 with 503", 503, maintenanceDoc, true, failure.ClassBackPressure, DefaultWaits.Maintenance},
		{"1999 in a 200 body", 200, maintenanceDoc, true, failure.ClassBackPressure, DefaultWaits.Maintenance},
		{"2001 recorded with 200", 200, sample("error_simple-return_2001_account-expired_recorded_200.xml"), false, failure.ClassFleetWide, 0},
		{"1960 with 409", 409, sample("error_simple-return_1960_concurrency-limit_mock_409.xml"), false, failure.ClassBackPressure, DefaultWaits.Concurrency},
		{"1965 with 409", 409, sample("error_simple-return_1965_rate-limit_mock_409.xml"), false, failure.ClassBackPressure, 68928 * time.Second},
		{"999 with 500", 500, sample("error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml"), false, failure.ClassRetryable, 0},
		{"1905 recorded with 400", 400, sample("error_simple-return_1905_bad-ids_recorded_400.xml"), false, failure.ClassPermanent, 0},
		{"503 without a document", 503, func(*testing.T) []byte { return nil }, false, failure.ClassRetryable, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body(t)
			c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, _ url.Values) {
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(tt.status)
				w.Write(body)
			})
			resp, err := c.Detections(t.Context(), DetectionQuery{IDs: []uint64{1}}.Form(), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, resp)
				resp.Close()
			}
			if err == nil {
				t.Fatal("no error")
			}
			wrapped := fmt.Errorf("batch 7: %w", err)
			if got := errors.Is(wrapped, ErrMaintenance); got != tt.maint {
				t.Fatalf("errors.Is(ErrMaintenance) = %v, want %v: %v", got, tt.maint, err)
			}
			if got := failure.ClassOf(wrapped); got != tt.class {
				t.Fatalf("class = %v, want %v: %v", got, tt.class, err)
			}
			if got := failure.WaitOf(wrapped); got != tt.wait {
				t.Fatalf("wait = %v, want %v", got, tt.wait)
			}
		})
	}
}

func sample(name string) func(t *testing.T) []byte {
	return func(t *testing.T) []byte { return readSample(t, name) }
}

// TestProbeRequest: the probe is a detection call for one host, with the
// real calls' default output options and no ids.
func TestProbeRequest(t *testing.T) {
	body := readSample(t, "hld_1host_qds_unique-vuln-id_warning-truncated_elastic-fixture.xml")
	c, f := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, _ url.Values) {
		if r.URL.Path != probePath {
			t.Errorf("path %s, want the detection path", r.URL.Path)
		}
		w.Header().Set("X-RateLimit-Remaining", "41")
		w.Write(body)
	})
	lim, err := c.Probe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if lim.RateRemaining != 41 {
		t.Errorf("limits = %+v", lim)
	}
	forms := f.forms()
	if len(forms) != 1 {
		t.Fatalf("%d calls, want 1", len(forms))
	}
	form := forms[0]
	if _, ok := form["ids"]; ok {
		t.Errorf("ids sent: %q", form.Get("ids"))
	}
	for k, want := range map[string]string{
		"action": "list", "output_format": "XML", "truncation_limit": "1",
		"status": "New,Active,Re-Opened,Fixed", "show_reopened_info": "1",
	} {
		if got := form.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

const probePath = "/api/2.0/fo/asset/host/vm/detection/"

// TestProbeReadsWhole: a probe answer is judged as a real call's body is.
func TestProbeReadsWhole(t *testing.T) {
	hld := readSample(t, "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml")
	tests := []struct {
		name  string
		body  []byte
		class failure.Class
		is    error
	}{
		{"cut body", hld[:len(hld)-100], failure.ClassRetryable, ErrMalformed},
		{"error document in 200", readSample(t, "error_simple-return_2001_account-expired_recorded_200.xml"), failure.ClassFleetWide, nil},
		{"1999 in 200", maintenanceDoc(t), failure.ClassBackPressure, ErrMaintenance},
		{"wrong root", readSample(t, "hostlist_details-none_idset_recorded_200.xml"), failure.ClassRetryable, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newFake(t, time.Minute, func(w http.ResponseWriter, r *http.Request, _ url.Values) { w.Write(tt.body) })
			_, err := c.Probe(t.Context())
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("class = %v, want %v: %v", got, tt.class, err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("%v is not %v", err, tt.is)
			}
		})
	}
}
