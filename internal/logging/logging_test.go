package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lmittmann/tint"
)

// logJSON logs through a JSON logger built by New and returns the parsed line.
func logJSON(t *testing.T, do func(*slog.Logger)) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(&buf, "json", "debug", false)
	if err != nil {
		t.Fatal(err)
	}
	do(l)
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 1 {
		t.Fatalf("want one line, got %d: %s", len(lines), buf.Bytes())
	}
	var m map[string]any
	if err := json.Unmarshal(lines[0], &m); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	return m
}

// logText logs through the tint handler New builds for format=text.
func logText(t *testing.T, do func(*slog.Logger)) string {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(&buf, "text", "debug", false)
	if err != nil {
		t.Fatal(err)
	}
	do(l)
	return buf.String()
}

// path walks nested JSON objects.
func path(t *testing.T, m map[string]any, keys ...string) any {
	t.Helper()
	var cur any = m
	for _, k := range keys {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: %v is not an object", keys, cur)
		}
		if cur, ok = obj[k]; !ok {
			t.Fatalf("%v: no key %q in %v", keys, k, obj)
		}
	}
	return cur
}

func TestNewPicksHandler(t *testing.T) {
	tests := []struct {
		format   string
		terminal bool
		wantJSON bool
	}{
		{"auto", false, true},
		{"auto", true, false},
		{"", false, true},
		{"", true, false},
		{"json", true, true},
		{"json", false, true},
		{"text", false, false},
		{"TEXT", true, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/terminal=%v", tt.format, tt.terminal), func(t *testing.T) {
			var buf bytes.Buffer
			l, err := New(&buf, tt.format, "info", tt.terminal)
			if err != nil {
				t.Fatal(err)
			}
			l.Info("hello", "n", 1)
			var m map[string]any
			isJSON := json.Unmarshal(buf.Bytes(), &m) == nil
			if isJSON != tt.wantJSON {
				t.Fatalf("JSON=%v, want %v: %s", isJSON, tt.wantJSON, buf.Bytes())
			}
			// Colours only on a terminal: an escape in a file is noise.
			if hasEsc := bytes.ContainsRune(buf.Bytes(), '\x1b'); hasEsc != (!tt.wantJSON && tt.terminal) {
				t.Fatalf("escape codes=%v: %q", hasEsc, buf.Bytes())
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, tt := range []struct{ format, level, want string }{
		{"xml", "info", `log format must be auto, text or json, got "xml"`},
		{"json", "verbose", `log level must be debug, info, warn or error, got "verbose"`},
		{"json", "info+2", `got "info+2"`},
	} {
		_, err := New(&bytes.Buffer{}, tt.format, tt.level, false)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%q, %q) = %v, want %q", tt.format, tt.level, err, tt.want)
		}
	}
}

func TestLevelFilter(t *testing.T) {
	levels := []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}
	for _, name := range []string{"debug", "info", "warn", "error", "WARN", ""} {
		t.Run(name, func(t *testing.T) {
			min, err := ParseLevel(name)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			l, err := New(&buf, "json", name, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, lvl := range levels {
				l.Log(context.Background(), lvl, "m")
			}
			var got []string
			dec := json.NewDecoder(&buf)
			for dec.More() {
				var m struct{ Level string }
				if err := dec.Decode(&m); err != nil {
					t.Fatal(err)
				}
				got = append(got, m.Level)
			}
			var want []string
			for _, lvl := range levels {
				if lvl >= min {
					want = append(want, lvl.String())
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("logged %v, want %v", got, want)
			}
		})
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a regular file is not a terminal")
	}
	if IsTerminal(nil) {
		t.Error("nil is not a terminal")
	}
	if null, err := os.Open(os.DevNull); err == nil {
		defer null.Close()
		if !IsTerminal(null) {
			t.Error("the null device is a character device")
		}
	}
}

type creds struct {
	URL      string
	User     string
	Password string
	Key      string
	Inner    struct{ AccessKey, Region string }
}

type urlStringer struct{ u string }

func (s urlStringer) String() string { return s.u }

const pass = "hunter2-Sup3r"

func TestRedactJSONHandler(t *testing.T) {
	cr := creds{URL: "https://bob:" + pass + "@q.example/api", User: "bob", Password: pass,
		Key: "runs/r1/detections/batch-000001.xml"}
	cr.Inner.AccessKey = pass
	cr.Inner.Region = "eu-1"
	u, _ := url.Parse("https://bob:" + pass + "@q.example/x")

	tests := []struct {
		name string
		do   func(*slog.Logger)
		path []string
		want any
	}{
		{"password key", func(l *slog.Logger) { l.Info("m", "password", pass) }, []string{"password"}, Redacted},
		{"camel key", func(l *slog.Logger) { l.Info("m", "QualysPassword", pass) }, []string{"QualysPassword"}, Redacted},
		{"secret_key", func(l *slog.Logger) { l.Info("m", "S3_SECRET_KEY", pass) }, []string{"S3_SECRET_KEY"}, Redacted},
		{"accessKey", func(l *slog.Logger) { l.Info("m", "accessKey", pass) }, []string{"accessKey"}, Redacted},
		{"header token", func(l *slog.Logger) { l.Info("m", "X-Auth-Token", pass) }, []string{"X-Auth-Token"}, Redacted},
		{"non-string under secret key", func(l *slog.Logger) { l.Info("m", "token", 42) }, []string{"token"}, Redacted},
		{"object key stays", func(l *slog.Logger) { l.Info("m", "key", "runs/r1/detections/batch-000001.xml") },
			[]string{"key"}, "runs/r1/detections/batch-000001.xml"},
		{"bucket stays", func(l *slog.Logger) { l.Info("m", "bucket", "lake") }, []string{"bucket"}, "lake"},
		{"monkey stays", func(l *slog.Logger) { l.Info("m", "monkey", "x") }, []string{"monkey"}, "x"},
		{"nested group", func(l *slog.Logger) {
			l.Info("m", slog.Group("qualys", slog.String("user", "bob"),
				slog.Group("auth", slog.String("password", pass), slog.String("url", "https://bob:"+pass+"@q.example"))))
		}, []string{"qualys", "auth", "password"}, Redacted},
		{"nested group url", func(l *slog.Logger) {
			l.Info("m", slog.Group("qualys", slog.Group("auth", slog.String("url", "https://bob:"+pass+"@q.example"))))
		}, []string{"qualys", "auth", "url"}, "https://REDACTED@q.example"},
		{"WithGroup and With", func(l *slog.Logger) { l.WithGroup("s3").With("secret_key", pass).Info("m") },
			[]string{"s3", "secret_key"}, Redacted},
		{"secret group hides members", func(l *slog.Logger) { l.Info("m", slog.Group("credentials", "user", "bob")) },
			[]string{"credentials", "user"}, Redacted},
		{"error with userinfo", func(l *slog.Logger) {
			l.Error("m", "err", fmt.Errorf("fetch: %w", errors.New(`Post "https://u:`+pass+`@host/api": EOF`)))
		}, []string{"err"}, `fetch: Post "https://REDACTED@host/api": EOF`},
		{"tint.Err", func(l *slog.Logger) { l.Error("m", tint.Err(errors.New("nats://u:"+pass+"@n1:4222 refused"))) },
			[]string{"err"}, "nats://REDACTED@n1:4222 refused"},
		{"message", func(l *slog.Logger) { l.Info("dial https://u:" + pass + "@h failed") },
			[]string{"msg"}, "dial https://REDACTED@h failed"},
		{"authorization in string", func(l *slog.Logger) { l.Info("m", "req", "Authorization: Basic Ym9iOmh1bnRlcjI=") },
			[]string{"req"}, "Authorization: Basic " + Redacted},
		{"bearer in string", func(l *slog.Logger) { l.Info("m", "note", "sent Bearer eyJhbGciOiJIUzI1NiJ9.e30.x") },
			[]string{"note"}, "sent Bearer " + Redacted},
		{"struct field", func(l *slog.Logger) { l.Info("m", "cfg", cr) }, []string{"cfg", "Password"}, Redacted},
		{"struct nested field", func(l *slog.Logger) { l.Info("m", "cfg", &cr) }, []string{"cfg", "Inner", "AccessKey"}, Redacted},
		{"struct url field", func(l *slog.Logger) { l.Info("m", "cfg", cr) }, []string{"cfg", "URL"}, "https://REDACTED@q.example/api"},
		{"struct object key stays", func(l *slog.Logger) { l.Info("m", "cfg", cr) }, []string{"cfg", "Key"}, cr.Key},
		{"struct region stays", func(l *slog.Logger) { l.Info("m", "cfg", cr) }, []string{"cfg", "Inner", "Region"}, "eu-1"},
		{"map", func(l *slog.Logger) { l.Info("m", "hdr", map[string]any{"Cookie": pass, "n": 1}) },
			[]string{"hdr", "Cookie"}, Redacted},
		{"map keeps numbers", func(l *slog.Logger) { l.Info("m", "hdr", map[string]any{"Cookie": pass, "n": 1}) },
			[]string{"hdr", "n"}, float64(1)},
		{"url.URL", func(l *slog.Logger) { l.Info("m", "u", u) }, []string{"u", "Host"}, "q.example"},
		{"plain values untouched", func(l *slog.Logger) { l.Info("m", "ids", []int{1, 2}) }, []string{"ids"}, []any{float64(1), float64(2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := logJSON(t, tt.do)
			got := path(t, m, tt.path...)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("%v = %#v, want %#v", tt.path, got, tt.want)
			}
			raw, _ := json.Marshal(m)
			if bytes.Contains(raw, []byte(pass)) || bytes.Contains(raw, []byte("Ym9iOmh1bnRlcjI")) {
				t.Fatalf("secret in output: %s", raw)
			}
		})
	}
}

func TestRedactTextHandler(t *testing.T) {
	u, _ := url.Parse("https://bob:" + pass + "@q.example/x")

	tests := []struct {
		name string
		do   func(*slog.Logger)
		want []string // substrings that must appear
	}{
		{"password key", func(l *slog.Logger) { l.Info("m", "password", pass) }, []string{"password=" + Redacted}},
		{"object key stays", func(l *slog.Logger) { l.Info("m", "key", "runs/r1/detections/batch-000001.xml") },
			[]string{"key=runs/r1/detections/batch-000001.xml"}},
		{"nested group", func(l *slog.Logger) {
			l.WithGroup("qualys").Info("m", slog.Group("auth", slog.String("token", pass)))
		}, []string{"qualys.auth.token=" + Redacted}},
		{"error", func(l *slog.Logger) { l.Error("m", "err", errors.New("GET https://u:"+pass+"@h/x: reset")) },
			[]string{"https://REDACTED@h/x"}},
		{"tint.Err", func(l *slog.Logger) { l.Error("m", tint.Err(errors.New("https://u:"+pass+"@h"))) },
			[]string{"https://REDACTED@h"}},
		// %+v of a *url.URL calls String, which includes the password.
		{"url.URL", func(l *slog.Logger) { l.Info("m", "u", u) }, []string{"https://REDACTED@q.example/x"}},
		{"stringer", func(l *slog.Logger) { l.Info("m", "s", urlStringer{"nats://a:" + pass + "@n"}) }, []string{"nats://REDACTED@n"}},
		{"bytes", func(l *slog.Logger) { l.Info("m", "b", []byte("https://a:"+pass+"@h")) }, []string{"https://REDACTED@h"}},
		{"message", func(l *slog.Logger) { l.Info("to https://u:" + pass + "@h") }, []string{"to https://REDACTED@h"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := logText(t, tt.do)
			if strings.Contains(out, pass) {
				t.Fatalf("secret in output: %s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q: %s", w, out)
				}
			}
		})
	}
}

// textValue returns the value of key in one tint line, unquoted.
func textValue(t *testing.T, line, key string) string {
	t.Helper()
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		t.Fatalf("no %s= in %q", key, line)
	}
	rest := line[i+len(key)+2:]
	if strings.HasPrefix(rest, `"`) {
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.Unquote(q)
		return v
	}
	v, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	return v
}

// The text handler prints a composite value as redacted JSON, so keys the
// rule knows are hidden there too.
func TestRedactTextStruct(t *testing.T) {
	cr := creds{URL: "https://bob:" + pass + "@q.example", Password: pass, Key: "runs/r1/detections/batch-000001.xml"}
	cr.Inner.AccessKey = pass
	out := logText(t, func(l *slog.Logger) { l.Info("m", "cfg", &cr) })
	var got creds
	if err := json.Unmarshal([]byte(textValue(t, out, "cfg")), &got); err != nil {
		t.Fatalf("cfg is not JSON: %v: %s", err, out)
	}
	want := creds{URL: "https://REDACTED@q.example", Password: Redacted, Key: cr.Key}
	want.Inner.AccessKey = Redacted
	if got != want {
		t.Fatalf("cfg = %+v, want %+v", got, want)
	}
}

type nilErr struct{ msg *string }

func (e *nilErr) Error() string { return *e.msg }

// A typed nil error panics when printed; the rule must leave that to the
// handler instead of crashing the log call.
func TestRedactNilPointerError(t *testing.T) {
	var e *nilErr
	m := logJSON(t, func(l *slog.Logger) { l.Info("m", "err", error(e)) })
	if _, ok := m["err"]; !ok {
		t.Fatalf("attribute lost: %v", m)
	}
}

// BenchmarkLog measures the redaction rule's cost on a typical worker line
// against the same handler without it.
func BenchmarkLog(b *testing.B) {
	line := func(l *slog.Logger) {
		l.Info("batch stored", "run", "20250101T000000Z-ab12", "batch", 12,
			"key", "runs/20250101T000000Z-ab12/detections/batch-000012.xml", "bytes", 123456,
			"url", "https://qualysapi.qg2.apps.qualys.com/api/2.0/fo/asset/host/vm/detection/",
			"note", "Posted the Detection request for 1000 hosts")
	}
	for _, bc := range []struct {
		name string
		l    *slog.Logger
	}{
		{"slog-json", slog.New(slog.NewJSONHandler(io.Discard, nil))},
		{"qfetch-json", must(New(io.Discard, "json", "info", false))},
		{"tint", slog.New(tint.NewTextHandler(io.Discard, &tint.Options{NoColor: true}))},
		{"qfetch-text", must(New(io.Discard, "text", "info", false))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				line(bc.l)
			}
		})
	}
}

func must(l *slog.Logger, err error) *slog.Logger {
	if err != nil {
		panic(err)
	}
	return l
}

func TestJSONDurationsAreReadable(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, FormatJSON, "info", false)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("waiting", "wait", 90*time.Second)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["wait"] != "1m30s" {
		t.Fatalf("wait = %v, want \"1m30s\"", rec["wait"])
	}
}
