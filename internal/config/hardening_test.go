package config

import (
	"encoding/base64"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/objstore"
)

// TestLoadShortSecret (#17.8): a secret too short to scrub safely stops the
// binary at start, naming the variable and neither the value nor its
// length; an access key ID, which names a key, may be short.
func TestLoadShortSecret(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const tooShort = "is shorter than 8 characters; a shorter secret cannot be kept out of logs safely"
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"password", with("QFETCH_QUALYS_PASSWORD", "p"), []string{"QFETCH_QUALYS_PASSWORD: " + tooShort}},
		{"password of 7", with("QFETCH_QUALYS_PASSWORD", "1234567"), []string{"QFETCH_QUALYS_PASSWORD: " + tooShort}},
		{"password of 7 runes", with("QFETCH_QUALYS_PASSWORD", "ééééééé"), []string{"QFETCH_QUALYS_PASSWORD: " + tooShort}},
		{"password of 8", with("QFETCH_QUALYS_PASSWORD", "12345678"), nil},
		{"password file", with("QFETCH_QUALYS_PASSWORD", "", "QFETCH_QUALYS_PASSWORD_FILE", short), []string{"QFETCH_QUALYS_PASSWORD: " + tooShort}},
		{"secret key", with("QFETCH_S3_ACCESS_KEY", "AKIA", "QFETCH_S3_SECRET_KEY", "x"), []string{"QFETCH_S3_SECRET_KEY: " + tooShort}},
		{"short access key", with("QFETCH_S3_ACCESS_KEY", "ak", "QFETCH_S3_SECRET_KEY", marker), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			err := Load(Prefix, &testSpec{})
			if got := errLines(err); !slices.Equal(got, tt.want) {
				t.Fatalf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestLoadHoldsCredentials (#17.7): after Load, the scrubber every logger and
// error record uses hides each secret read and the proxy credentials of
// HTTPS_PROXY and HTTP_PROXY, in their encodings; a short proxy password
// goes as a whole token and leaves words alone.
func TestLoadHoldsCredentials(t *testing.T) {
	const (
		qualysPass = "qualys-Pass-0193"
		s3Secret   = "s3-Secret-Key-6620"
		proxyPass  = "pr0xy-Pass:word"
	)
	setEnv(t, with("QFETCH_QUALYS_PASSWORD", qualysPass, "QFETCH_S3_ACCESS_KEY", "AKIAEXAMPLE", "QFETCH_S3_SECRET_KEY", s3Secret))
	t.Setenv("HTTPS_PROXY", "http://svc:"+url.QueryEscape(proxyPass)+"@proxy.internal:3128")
	t.Setenv("http_proxy", "proxy2.internal:3128") // no credentials
	t.Setenv("ALL_PROXY", "socks5://tok-En4711ab@proxy4.internal:1080")
	t.Setenv("HTTP_PROXY", "user2:zq@proxy3.internal:3128")
	if err := Load(Prefix, &testSpec{}); err != nil {
		t.Fatal(err)
	}
	proxyBasic := base64.StdEncoding.EncodeToString([]byte("svc:" + proxyPass))
	for _, tt := range []struct{ in, leak string }{
		{"401 for " + qualysPass, qualysPass},
		{"body=" + url.QueryEscape("password="+qualysPass), url.QueryEscape(qualysPass)},
		{"sig " + s3Secret, s3Secret},
		{"407 Proxy-Authorization%3A+Basic+" + url.QueryEscape(proxyBasic), url.QueryEscape(proxyBasic)},
		{"Proxy-Authorization: Basic " + proxyBasic, proxyBasic},
		{"echo " + proxyPass + " end", proxyPass},
		{"proxyconnect http://svc:" + url.QueryEscape(proxyPass) + "@proxy.internal:3128", url.QueryEscape(proxyPass)},
		{"sent user2 zq over", " zq "},
		{"proxy said tok-En4711ab", "tok-En4711ab"},
	} {
		if got := logging.Scrub(tt.in); strings.Contains(got, tt.leak) {
			t.Errorf("Scrub(%q) = %q, still holds %q", tt.in, got, tt.leak)
		}
	}
	if got := logging.Scrub("zqx is a word"); got != "zqx is a word" {
		t.Errorf("a short proxy password mangled a word: %q", got)
	}
}

// TestPrefixAcceptedMakesValidKeys (#17.10): one rule. Every prefix Load
// accepts gives keys objstore accepts; the ones that did not ('.qualys',
// 'data/.raw', a tab) stop the binary at start.
func TestPrefixAcceptedMakesValidKeys(t *testing.T) {
	for _, p := range []string{".qualys", "data/.raw", "a\tb", "a\x7fb", "qualys", "vm/qualys", "a.b/c-d_e", "é/ü", "x/", "/x", "a//b",
		strings.Repeat("p", 768), strings.Repeat("p", 769), "\xff"} {
		setEnv(t, with("QFETCH_S3_PREFIX", p))
		var s testSpec
		err := Load(Prefix, &s)
		keyErr := objstore.ValidKey(objstore.DetectionPartKey(p, strings.Repeat("r", 64), 1234567, "2.1.2.1.2.1", 12345))
		if err == nil && keyErr != nil {
			t.Errorf("prefix %q: Load accepts it, but its keys are invalid: %v", p, keyErr)
		}
		if err != nil && objstore.ValidPrefix(p) == nil {
			t.Errorf("prefix %q: Load refuses what objstore accepts: %v", p, err)
		}
	}
}
