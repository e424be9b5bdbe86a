package logging

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestSecretKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"password", true},
		{"PASSWORD", true},
		{"qualys_password", true},
		{"QualysPassword", true},
		{"passwd", true},
		{"secret", true},
		{"client-secret", true},
		{"token", true},
		{"X-Auth-Token", true},
		{"AWS_SESSION_TOKEN", true},
		{"Authorization", true},
		{"Proxy-Authorization", true},
		{"access_key", true},
		{"accessKey", true},
		{"AccessKeyID", true},
		{"ACCESSKEY", true},
		{"secret_key", true},
		{"S3SecretKey", true},
		{"api_key", true},
		{"credentials", true},
		{"Set-Cookie", true},
		{"s3.secret_key", true},
		{"password_file", false},
		{"CredsFile", false},
		{"secret_path", false},
		{"file", false},
		{"key", false},
		{"object_key", false},
		{"keys", false},
		{"bucket", false},
		{"monkey", false},
		{"tokenizer", false},
		{"passage", false},
		{"author", false},
		{"batch", false},
		{"run", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := SecretKey(tt.key); got != tt.want {
			t.Errorf("SecretKey(%q) = %v, want %v (words %q)", tt.key, got, tt.want, splitWords(tt.key))
		}
	}
}

func TestScrub(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://u:p@host/x", "https://REDACTED@host/x"},
		{"https://user@host", "https://REDACTED@host"},
		{"https://u:p@ss@host/x?q=a@b", "https://REDACTED@host/x?q=a@b"},
		{`Get "https://u:p@h:443/api": dial tcp: refused`, `Get "https://REDACTED@h:443/api": dial tcp: refused`},
		{"nats://a:b@n1:4222,nats://c:d@n2:4222", "nats://REDACTED@n1:4222,nats://REDACTED@n2:4222"},
		{"https://host/path?email=a@b.c", "https://host/path?email=a@b.c"},
		{"mail bob@example.com", "mail bob@example.com"},
		{"https://qualysapi.qg2.apps.qualys.com/api/2.0/fo/", "https://qualysapi.qg2.apps.qualys.com/api/2.0/fo/"},
		{"Authorization: Basic Ym9iOmh1bnRlcjI=", "Authorization: Basic " + Redacted},
		{"authorization=abc123", "authorization=" + Redacted},
		{"map[Accept:[*/*] Authorization:[Basic Ym9iOmh1bnRlcjI=]]", "map[Accept:[*/*] Authorization:[Basic " + Redacted + "]]"},
		{`{"Authorization":"Bearer abc.def.ghi"}`, `{"Authorization":"Bearer ` + Redacted + `"}`},
		{"got Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "got Bearer " + Redacted},
		{"basic Ym9iOmh1bnRlcjI=", "basic " + Redacted},
		{"basic authentication failed", "basic authentication failed"},
		{"Basic Authentication failed", "Basic Authentication failed"},
		{"bearer token missing", "bearer token missing"},
		{"plain text", "plain text"},
		{"", ""},
	}
	for _, tt := range tests {
		got := Scrub(tt.in)
		if got != tt.want {
			t.Errorf("Scrub(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
		if again := Scrub(got); again != got {
			t.Errorf("Scrub is not idempotent on %q: %q", got, again)
		}
	}
}

func TestRedactJSON(t *testing.T) {
	tests := []struct {
		in, want string
		changed  bool
	}{
		{`{"a":1,"password":"x","b":[{"token":{"deep":1}},"https://u:p@h"]}`,
			`{"a":1,"password":"[redacted]","b":[{"token":"[redacted]"},"https://REDACTED@h"]}`, true},
		{`{"key":"runs/r/x.xml","n":1.50,"t":true,"z":null}`, `{"key":"runs/r/x.xml","n":1.50,"t":true,"z":null}`, false},
		{`"https://u:p@h"`, `"https://REDACTED@h"`, true},
		{`[]`, `[]`, false},
	}
	for _, tt := range tests {
		out, changed, err := redactJSON([]byte(tt.in))
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if string(out) != tt.want || changed != tt.changed {
			t.Errorf("redactJSON(%s) = %s, %v; want %s, %v", tt.in, out, changed, tt.want, tt.changed)
		}
	}
	if _, _, err := redactJSON([]byte(`{"a":1} x`)); err == nil {
		t.Error("trailing data accepted")
	}
}

func FuzzScrub(f *testing.F) {
	for _, s := range []string{"https://u:p@h/x", "Authorization: Basic abc=", "x Bearer a.b.c", "a@b", "://@"} {
		f.Add("u", "p4ss", s)
	}
	f.Fuzz(func(t *testing.T, user, password, text string) {
		got := Scrub(text)
		if Scrub(got) != got {
			t.Fatalf("not idempotent: %q → %q → %q", text, got, Scrub(got))
		}
		// A password placed in a URL's userinfo never survives, whatever
		// surrounds it, as long as it is URL-shaped (no separators inside).
		if password == "" || strings.ContainsAny(password+user, "/?# \t\r\n\v\f\u0085\u00a0") || strings.Contains(text, password) {
			return
		}
		in := text + " https://" + user + ":" + password + "@host/p " + text
		want := Scrub(text + " https://REDACTED@host/p " + text)
		if out := Scrub(in); out != want {
			t.Fatalf("Scrub(%q)\n got %q\nwant %q", in, out, want)
		}
	})
}

func FuzzRedactJSON(f *testing.F) {
	for _, s := range []string{`{"password":"x"}`, `[1,"https://u:p@h",{"a":{"token":[1]}}]`, `"s"`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if !json.Valid([]byte(in)) {
			return
		}
		out, _, err := redactJSON([]byte(in))
		if err != nil {
			t.Fatalf("valid JSON %q refused: %v", in, err)
		}
		if !json.Valid(out) {
			t.Fatalf("output not JSON: %q → %q", in, out)
		}
		again, changed, err := redactJSON(out)
		if err != nil || changed || string(again) != string(out) {
			t.Fatalf("not idempotent: %q → %q → %q (%v, %v)", in, out, again, changed, err)
		}
	})
}

func ExampleScrub() {
	fmt.Println(Scrub(`Post "https://bob:hunter2@qualysapi.example/api/2.0/fo/": EOF`))
	// Output: Post "https://REDACTED@qualysapi.example/api/2.0/fo/": EOF
}
