package qualys

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestEchoedCredentialsStayOutOfErrors: a proxy or gateway error page
// that echoes the request (a common debugging 400/502 page) puts the Basic
// credentials into APIError.Text, and from there into logs' sibling records
// that are not scrubbed: the DLQ record's last_error, the Term reason and the
// /readyz body (I7). The client knows its own password and could cut it out.
func TestEchoedCredentialsStayOutOfErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, "Request rejected by gateway. Authorization=%s", r.Header.Get("Authorization"))
	}))
	defer srv.Close()
	const user, pass = "acme_ab1", "S3cr3t-P4ss!"
	c, err := New(Config{BaseURL: srv.URL, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Detections(t.Context(), url.Values{"ids": {"1"}}, nil)
	b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err == nil || strings.Contains(err.Error(), b64) || strings.Contains(err.Error(), pass) {
		t.Fatalf("error carries the credentials: %v", err)
	}
}
