package qualys

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestEchoedCredentialsEveryEncoding (#17.7): a gateway that echoes the
// Authorization header URL-encoded, path-escaped, HTML-escaped or without
// its scheme word leaves no trace of the password or the Basic value in the
// error.
func TestEchoedCredentialsEveryEncoding(t *testing.T) {
	const user, pass = "acme_ab1", "P@ss:w%rd/\u00e9\u6f22+?=~"
	forms := []struct {
		name string
		echo func(auth string) string
	}{
		{"plain", func(a string) string { return "Authorization: " + a }},
		{"query-escaped", func(a string) string { return "request=" + url.QueryEscape("Authorization: "+a) }},
		{"path-escaped", func(a string) string { return "hdr " + url.PathEscape(a) }},
		{"html numeric", func(a string) string {
			return "<pre>" + strings.NewReplacer("+", "&#43;", "/", "&#47;").Replace(a) + "</pre>"
		}},
		{"no scheme", func(a string) string { return "cred=" + strings.TrimPrefix(a, "Basic ") }},
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "gateway error; "+f.echo(r.Header.Get("Authorization")))
			}))
			defer srv.Close()
			c, err := New(Config{BaseURL: srv.URL, Username: user, Password: pass})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Detections(t.Context(), url.Values{"ids": {"1"}}, nil)
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			for _, leak := range []string{pass, url.QueryEscape(pass), b64, url.QueryEscape(b64), url.PathEscape(b64), b64[len(user):]} {
				if strings.Contains(msg, leak) {
					t.Fatalf("error holds %q: %s", leak, msg)
				}
			}
			if !strings.Contains(msg, "[redacted]") {
				t.Errorf("nothing redacted: %s", msg)
			}
		})
	}
}

// TestShortPasswordDoesNotMangleText (#17.8): with the password "p" the
// status text of a 307 used to read "307 Tem[redacted]orary Redirect",
// which both mangles the message and points at the password.
func TestShortPasswordDoesNotMangleText(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "upstream said 307 Temporary Redirect; pass=p")
	}))
	defer srv.Close()
	c, err := New(Config{BaseURL: srv.URL, Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Detections(t.Context(), url.Values{"ids": {"1"}}, nil)
	if err == nil {
		t.Fatal("want an error")
	}
	if msg := err.Error(); !strings.Contains(msg, "307 Temporary Redirect") || !strings.Contains(msg, "pass=[redacted]") {
		t.Errorf("error text: %s", msg)
	}
}
