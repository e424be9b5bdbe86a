package logging

import (
	"encoding/base64"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// lowerEscapes writes a percent-escaped text's hex digits in lower case, as
// .NET's UrlEncode and many gateways do ("%2f" for '/'): RFC 3986 makes the
// two forms equivalent.
func lowerEscapes(s string) string {
	return regexp.MustCompile(`%[0-9A-F]{2}`).ReplaceAllStringFunc(s, strings.ToLower)
}

// A held credential echoed with lower-case percent escapes is hidden too.
func TestSecretsLowerCaseEscapes(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte(echoUser + ":" + echoPass))
	for name, in := range map[string]string{
		"password": "body: password=" + lowerEscapes(url.QueryEscape(echoPass)) + "&x=1",
		"path":     "GET /" + lowerEscapes(url.PathEscape(echoPass)) + "/x",
		"basic":    "echo=" + lowerEscapes(url.QueryEscape(basic)) + "&x=1",
		"long":     "pw=" + lowerEscapes(url.QueryEscape("Secret/Pass+1")) + "&x=1",
	} {
		t.Run(name, func(t *testing.T) {
			var s Secrets
			s.AddBasic(echoUser, echoPass)
			s.Add("Secret/Pass+1")
			got := s.Scrub(in)
			for _, leak := range []string{"Pass", "w%25rd", "rd%2f", "%2bcGFz", lowerEscapes(url.QueryEscape(basic))[8:20]} {
				if strings.Contains(got, leak) {
					t.Errorf("Scrub(%q) = %q: shows %q", in, got, leak)
				}
			}
		})
	}
}

// BenchmarkScrubLargeLine: the scrubber's cost on a large line, with
// credentials held (long, a Basic pair and a short proxy password) and text
// that keeps the token and pattern paths busy.
func BenchmarkScrubLargeLine(b *testing.B) {
	var s Secrets
	s.AddBasic(echoUser, echoPass)
	s.Add("Secret/Pass+1", "p")
	for _, size := range []int{64 << 10, 1 << 20, 4 << 20} {
		for name, unit := range map[string]string{
			"text":   "307 Temporary Redirect p ",
			"basics": "Authorization%3A+Basic+x basic bearer://a@",
		} {
			line := strings.Repeat(unit, size/len(unit))
			b.Run(name+"/"+strconv.Itoa(size), func(b *testing.B) {
				b.SetBytes(int64(len(line)))
				for b.Loop() {
					_ = s.Scrub(line)
				}
			})
		}
	}
}
