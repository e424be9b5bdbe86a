package logging

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// The repro's credentials (#17.7): a password with every character class
// that escapes differently in URLs, HTML and JSON.
const (
	echoUser = "acme_ab1"
	echoPass = "P@ss:w%rd/\u00e9\u6f22+?=~"
)

// TestSecretsEncodings: every way a gateway or an error message was seen
// (or could plausibly) echo a held credential hides it; the text around it
// stays.
func TestSecretsEncodings(t *testing.T) {
	var s Secrets
	s.AddBasic(echoUser, echoPass)
	basic := base64.StdEncoding.EncodeToString([]byte(echoUser + ":" + echoPass))
	jsonPass, _ := json.Marshal(echoPass)
	tests := []struct {
		name, in string
	}{
		{"plain header", "gateway error; Authorization: Basic " + basic},
		{"bare base64", "cred=" + basic + " end"},
		{"query-escaped header", "request=" + url.QueryEscape("Authorization: Basic "+basic) + "&x=1"},
		{"path-escaped value", "hdr " + url.PathEscape("Basic "+basic)},
		{"html-escaped base64", "<pre>" + strings.ReplaceAll(strings.ReplaceAll(basic, "+", "&#43;"), "/", "&#47;") + "</pre>"},
		{"html-escaped password", "<td>" + html.EscapeString(echoPass) + "</td>"},
		{"password plain", "login failed for " + echoUser + " with " + echoPass + "."},
		{"password query-escaped", "body: username=" + echoUser + "&password=" + url.QueryEscape(echoPass) + "&x=1"},
		{"password path-escaped", "GET /" + url.PathEscape(echoPass) + "/x"},
		{"password JSON", `{"pw":` + string(jsonPass) + `}`},
		{"password %q", "got " + strconv.Quote(echoPass)},
		{"base64 URL alphabet", "t=" + base64.URLEncoding.EncodeToString([]byte(echoUser+":"+echoPass))},
		{"base64 inside a longer blob", "blob " + base64.StdEncoding.EncodeToString([]byte("x-"+echoPass+"-y"))},
		{"base64 at offset 1", base64.StdEncoding.EncodeToString([]byte("ab:" + echoPass))},
		{"base64 at offset 2", base64.StdEncoding.EncodeToString([]byte("abcd:" + echoPass))},
		{"base64 then query-escaped", "a=" + url.QueryEscape(base64.StdEncoding.EncodeToString([]byte("zz"+echoPass)))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Scrub(tt.in)
			for _, leak := range leaks(echoPass, basic) {
				if strings.Contains(got, leak) {
					t.Fatalf("Scrub(%q)\n = %q\nstill holds %q", tt.in, got, leak)
				}
			}
			if !strings.Contains(got, Redacted) {
				t.Fatalf("Scrub(%q) = %q: nothing redacted", tt.in, got)
			}
			if again := s.Scrub(got); again != got {
				t.Errorf("not idempotent: %q → %q", got, again)
			}
		})
	}
}

// leaks are pieces of the secret that must not survive: the password in
// the forms tests use, and a stretch of its base64 long enough to mean it.
func leaks(pass, basic string) []string {
	out := []string{pass, url.QueryEscape(pass), url.PathEscape(pass), html.EscapeString(pass)}
	for k := range 3 {
		in := base64Inner(base64.StdEncoding, pass, k)
		out = append(out, in, url.QueryEscape(in))
	}
	return append(out, basic, url.QueryEscape(basic))
}

// TestSecretsShort (#17.8): a credential shorter than MinSecretLen goes
// only where it stands alone; inside a word it stays, so that the scrubbing
// neither mangles text nor points at the secret.
func TestSecretsShort(t *testing.T) {
	var s Secrets
	s.Add("p", "x9")
	tests := []struct{ in, want string }{
		{"307 Temporary Redirect", "307 Temporary Redirect"},
		{"upload complete", "upload complete"},
		{"user=bob pass=p end", "user=bob pass=" + Redacted + " end"},
		{"http://u:p@proxy:3128", "http://REDACTED@proxy:3128"},
		{"proxy u:p refused", "proxy u:" + Redacted + " refused"},
		{"p", Redacted},
		{"(p)", "(" + Redacted + ")"},
		{"x9 and ax9 and x9b", Redacted + " and ax9 and x9b"},
		{"[redacted] stays", "[redacted] stays"},
	}
	for _, tt := range tests {
		if got := s.Scrub(tt.in); got != tt.want {
			t.Errorf("Scrub(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSecretsLongInsideWords: a credential of MinSecretLen or more goes
// wherever it is, glued to other text too.
func TestSecretsLongInsideWords(t *testing.T) {
	var s Secrets
	s.Add("hunter2-Sup3r")
	for _, in := range []string{"passwordhunter2-Sup3r", "xhunter2-Sup3rx", "a=hunter2-Sup3r&b"} {
		if got := s.Scrub(in); strings.Contains(got, "hunter2-Sup3r") {
			t.Errorf("Scrub(%q) = %q", in, got)
		}
	}
}

func TestSecretsEmptyAndRedactedWord(t *testing.T) {
	var s Secrets
	if got := s.Scrub("nothing held"); got != "nothing held" {
		t.Errorf("empty set changed text: %q", got)
	}
	s.Add("", "[redacted]", "redacted")
	if got := s.Scrub("a [redacted] b"); got != "a [redacted] b" {
		t.Errorf("got %q", got)
	}
}

// TestPatternsEscaped: credentials the process does not hold are still
// found by shape when query-escaped.
func TestPatternsEscaped(t *testing.T) {
	tests := []struct{ in, want string }{
		{"request=Authorization%3A+Basic+Ym9iOmh1bnRlcjI%3D&x=1", "request=Authorization%3A+Basic+" + Redacted + "&x=1"},
		{"h=Proxy-Authorization%3A%20Basic%20Ym9iOmh1bnRlcjI%3D", "h=Proxy-Authorization%3A%20Basic%20" + Redacted},
		{"q=Basic+Ym9iOmh1bnRlcjI%3D", "q=Basic+" + Redacted},
		{"u=https%3A%2F%2Fbob%3Ahunter2%40proxy%3A3128%2Fx", "u=https%3A%2F%2FREDACTED%40proxy%3A3128%2Fx"},
		{"u=https%3A%2F%2Fhost%2Fp%3Fe%3Da%40b", "u=https%3A%2F%2Fhost%2Fp%3Fe%3Da%40b"},
		{"Basic+authentication+failed", "Basic+authentication+failed"},
	}
	for _, tt := range tests {
		if got := Scrub(tt.in); got != tt.want {
			t.Errorf("Scrub(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestHoldReachesLoggers: what the process holds is hidden by Scrub and by
// every logger New builds, in any attribute.
func TestHoldReachesLoggers(t *testing.T) {
	const secret = "held-Secret-4711"
	HoldBasic("svc", secret)
	basic := base64.StdEncoding.EncodeToString([]byte("svc:" + secret))
	if got := Scrub("pw " + secret); strings.Contains(got, secret) {
		t.Fatalf("Scrub = %q", got)
	}
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		l, err := New(&buf, format, "info", false)
		if err != nil {
			t.Fatal(err)
		}
		l.Info("echo "+url.QueryEscape("Authorization: Basic "+basic), "body", "x"+secret+"y", "n", 1)
		if out := buf.String(); strings.Contains(out, secret) || strings.Contains(out, basic[:12]) {
			t.Errorf("%s: secret in %s", format, out)
		}
	}
}

// FuzzSecrets: a held secret of MinSecretLen or more never survives in any
// of the encodings it is held in, wherever it sits in the text, and
// scrubbing twice changes nothing.
func FuzzSecrets(f *testing.F) {
	f.Add("hunter2-Sup3r", "before ", " after", uint8(0))
	f.Add(echoPass, "x=", "&y", uint8(3))
	f.Add("ééééééééé", "", "", uint8(7))
	f.Fuzz(func(t *testing.T, secret, before, after string, form uint8) {
		if len(secret) < MinSecretLen || strings.Contains(before+after, secret) || strings.Contains(Redacted, secret) {
			return
		}
		var s Secrets
		s.Add(secret)
		encs := encodings(secret)
		enc := encs[int(form)%len(encs)]
		got := s.Scrub(before + enc + after)
		if s.Scrub(got) != got {
			t.Fatalf("not idempotent: %q → %q", got, s.Scrub(got))
		}
		if strings.Contains(got, secret) {
			t.Fatalf("secret %q survives in %q", secret, got)
		}
	})
}
