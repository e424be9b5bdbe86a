package config

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/logging"
)

const marker = "s3cr3t-Hunter2"

type holder struct {
	User string
	Pass Secret
	Keys []Secret
	Tags map[string]Secret
}

func TestSecretFmt(t *testing.T) {
	s := Secret(marker)
	h := holder{User: "bob", Pass: s, Keys: []Secret{s}, Tags: map[string]Secret{"k": s}}
	tests := []struct {
		name, got, want string
	}{
		{"String", s.String(), "[redacted]"},
		{"GoString", s.GoString(), "[redacted]"},
		{"%v", fmt.Sprintf("%v", s), "[redacted]"},
		{"%+v", fmt.Sprintf("%+v", s), "[redacted]"},
		{"%#v", fmt.Sprintf("%#v", s), "[redacted]"},
		{"%s", fmt.Sprintf("%s", s), "[redacted]"},
		{"%q", fmt.Sprintf("%q", s), `"[redacted]"`},
		{"%x", fmt.Sprintf("%x", s), "[redacted]"},
		{"%X", fmt.Sprintf("%X", s), "[redacted]"},
		{"%d", fmt.Sprintf("%d", s), "[redacted]"},
		{"%10s", fmt.Sprintf("%10s", s), "[redacted]"},
		{"Sprint", fmt.Sprint(s), "[redacted]"},
		{"Sprintln", fmt.Sprintln(s), "[redacted]\n"},
		{"pointer %v", fmt.Sprintf("%v", &s), "[redacted]"},
		{"struct %v", fmt.Sprintf("%v", h), "{bob [redacted] [[redacted]] map[k:[redacted]]}"},
		{"struct %+v", fmt.Sprintf("%+v", h), "{User:bob Pass:[redacted] Keys:[[redacted]] Tags:map[k:[redacted]]}"},
		{"struct %#v", fmt.Sprintf("%#v", h), `config.holder{User:"bob", Pass:[redacted], Keys:[]config.Secret{[redacted]}, Tags:map[string]config.Secret{"k":[redacted]}}`},
		{"struct pointer %+v", fmt.Sprintf("%+v", &h), "&{User:bob Pass:[redacted] Keys:[[redacted]] Tags:map[k:[redacted]]}"},
		{"Reveal", s.Reveal(), marker},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

// An empty secret shows as empty, so "not set" is visible; it hides nothing.
func TestSecretEmpty(t *testing.T) {
	var s Secret
	for verb, want := range map[string]string{"%v": "", "%s": "", "%q": `""`, "%#v": ""} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("%s of empty = %q, want %q", verb, got, want)
		}
	}
	if b, _ := json.Marshal(s); string(b) != `""` {
		t.Errorf("JSON of empty = %s", b)
	}
}

func TestSecretMarshal(t *testing.T) {
	h := holder{User: "bob", Pass: marker, Keys: []Secret{marker}, Tags: map[string]Secret{"k": marker}}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back holder
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Pass != "[redacted]" || back.Keys[0] != "[redacted]" || back.Tags["k"] != "[redacted]" {
		t.Errorf("JSON round trip = %+v from %s", back, b)
	}
	txt, _ := Secret(marker).MarshalText()
	if string(txt) != "[redacted]" {
		t.Errorf("MarshalText = %q", txt)
	}
	x, err := xml.Marshal(xmlHolder{Pass: marker})
	if err != nil || strings.Contains(string(x), marker) {
		t.Errorf("XML = %s, %v", x, err)
	}
}

type xmlHolder struct{ Pass Secret }

func TestSecretSlog(t *testing.T) {
	h := holder{User: "bob", Pass: marker}
	do := func(l *slog.Logger) {
		l.Info("m", "pass", Secret(marker), "holder", h, "ptr", &h, slog.Group("g", "p", Secret(marker)))
	}
	// Plain slog handlers, without qfetch's redaction rule: the type alone
	// must be enough.
	var jb bytes.Buffer
	do(slog.New(slog.NewJSONHandler(&jb, nil)))
	var m struct {
		Pass   string
		Holder struct{ Pass string }
		G      struct{ P string }
	}
	if err := json.Unmarshal(jb.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m.Pass != "[redacted]" || m.Holder.Pass != "[redacted]" || m.G.P != "[redacted]" {
		t.Errorf("JSON handler: %+v", m)
	}
	var tb bytes.Buffer
	do(slog.New(slog.NewTextHandler(&tb, nil)))
	var lb bytes.Buffer
	l, err := logging.New(&lb, "text", "info", false)
	if err != nil {
		t.Fatal(err)
	}
	do(l)
	var qb bytes.Buffer
	l, _ = logging.New(&qb, "json", "info", false)
	do(l)
	for name, out := range map[string]string{"slog json": jb.String(), "slog text": tb.String(), "tint": lb.String(), "qfetch json": qb.String()} {
		if strings.Contains(out, marker) {
			t.Errorf("%s handler printed the secret: %s", name, out)
		}
		if !strings.Contains(out, "[redacted]") {
			t.Errorf("%s handler: no [redacted] in %s", name, out)
		}
	}
}

func TestSecretInErrors(t *testing.T) {
	h := holder{User: "bob", Pass: marker}
	errs := []error{
		fmt.Errorf("connect with %v: %w", h, errors.New("refused")),
		fmt.Errorf("connect with %+v", &h),
		fmt.Errorf("connect with %#v", h),
		errors.Join(fmt.Errorf("a %s", Secret(marker)), fmt.Errorf("b %q", Secret(marker))),
		fmt.Errorf("wrapped: %w", fmt.Errorf("inner %v", h)),
	}
	for i, err := range errs {
		if strings.Contains(err.Error(), marker) {
			t.Errorf("error %d shows the secret: %v", i, err)
		}
	}
}
