package logging

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"unicode"
)

// Redacted replaces whatever the redaction rule hides.
const Redacted = "[redacted]"

// secretWords are key words that name a secret on their own. Matching is per
// word, so "key" (object keys) and "bucket" stay visible while
// "qualys_password", "X-Auth-Token" and "accessKey" do not.
var secretWords = map[string]bool{
	"password": true, "passwd": true, "passphrase": true,
	"secret": true, "secrets": true,
	"token": true, "tokens": true,
	"authorization": true,
	"credential":    true, "credentials": true, "creds": true,
	"cookie": true, "cookies": true,
	"accesskey": true, "secretkey": true, "apikey": true, "privatekey": true,
}

// pathWords end keys that name a file holding a secret, not the secret.
var pathWords = map[string]bool{"file": true, "path": true, "dir": true}

// secretPairs are two adjacent words that name a secret together.
var secretPairs = map[[2]string]bool{
	{"access", "key"}: true, {"secret", "key"}: true,
	{"api", "key"}: true, {"private", "key"}: true,
}

// SecretKey reports whether an attribute or JSON key names a secret.
// Keys ending in file, path or dir name a location and stay visible. Keys are
// split into lower-case words at punctuation and camel-case
// boundaries: "S3SecretKey" is s3/secret/key, "ACCESS_KEY" is access/key.
func SecretKey(key string) bool {
	if !mayBeSecretKey(key) {
		return false // the common case, without allocating
	}
	words := splitWords(key)
	if len(words) > 1 && pathWords[words[len(words)-1]] {
		return false // password_file, CredsFile: where a secret is, not what
	}
	for i, w := range words {
		if secretWords[w] {
			return true
		}
		if i > 0 && secretPairs[[2]string{words[i-1], w}] {
			return true
		}
	}
	return false
}

// secretStems are in every secret word and pair; a key with none of them
// cannot be secret.
var secretStems = []string{"pass", "secret", "token", "auth", "cred", "cookie", "key"}

func mayBeSecretKey(key string) bool {
	for _, stem := range secretStems {
		if containsFold(key, stem) {
			return true
		}
	}
	return false
}

// containsFold is strings.Contains ignoring ASCII case; sub is lower case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func splitWords(s string) []string {
	var words []string
	rs := []rune(s)
	start := -1
	flush := func(end int) {
		if start >= 0 {
			words = append(words, strings.ToLower(string(rs[start:end])))
			start = -1
		}
	}
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush(i)
			continue
		}
		if start >= 0 && unicode.IsUpper(r) {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			// fooBar → foo|Bar; HTTPServer → HTTP|Server; S3Key → S3|Key.
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				flush(i)
			}
		}
		if start < 0 {
			start = i
		}
	}
	flush(len(rs))
	return words
}

var (
	// userinfoRE finds scheme://userinfo@ ; the userinfo runs to the last @
	// before the host's end, because passwords are often pasted unescaped.
	userinfoRE = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#\s]*@`)
	// userinfoEscRE is userinfoRE in a URL that was itself query-escaped
	// (a proxy or redirect URL echoed in a form value): scheme%3A%2F%2F
	// userinfo%40, the userinfo stopping at an escaped '/' or '?'.
	userinfoEscRE = regexp.MustCompile(`(?i)([a-z][a-z0-9+.\-]*%3A%2F%2F)(?:[^%/?#&\s]|%(?:2[0-9a-e]|3[0-9a-e]|[014-9a-f][0-9a-f]))*%40`)
	// authHeaderRE finds an Authorization header and its value in any of the
	// shapes it reaches a log: "Authorization: Basic x", "authorization=x",
	// http.Header's "Authorization:[Basic x]", JSON's "Authorization":"x",
	// and query-escaped, as a gateway echoes a request in a form value:
	// "Authorization%3A+Basic+x".
	authHeaderRE = regexp.MustCompile(`(?i)(\bauthorization["']?(?:\s*[:=]\s*|%3A(?:\+|%20)*|%3D)["'\[]?)(?:(basic|bearer|digest|token|negotiate)(?:\s+|\+|%20)+)?([^\s"'\],;&]+)`)
	// schemeCredRE finds "Basic <credential>" and "Bearer <credential>"
	// anywhere; looksCredential keeps "basic authentication failed" readable.
	schemeCredRE = regexp.MustCompile(`(?i)\b(basic|bearer)(\s+)([A-Za-z0-9._~+/\-]+=*)`)
	// schemeCredEscRE is schemeCredRE query- or path-escaped: the space is
	// '+' or %20, the credential's '+', '/' and '=' are %2B, %2F, %3D.
	schemeCredEscRE = regexp.MustCompile(`(?i)\b(basic|bearer)(\+|%20)([A-Za-z0-9._~%\-]+)`)
)

// Scrub hides credentials inside free text: every credential the process
// holds ([Hold]), in every encoding [Secrets] knows; the userinfo of any URL
// (scheme://user:pass@host becomes scheme://REDACTED@host, query-escaped
// too); and the value of Authorization headers and Basic/Bearer
// credentials, plain or query-escaped. Other text is returned unchanged.
// Use it on error text bound for records other than logs.
func Scrub(s string) string { return held.Scrub(s) }

// scrubPatterns hides the credentials Scrub finds by their shape alone.
func scrubPatterns(s string) string {
	if strings.Contains(s, "@") && strings.Contains(s, "://") {
		s = userinfoRE.ReplaceAllString(s, "${1}REDACTED@")
	}
	if strings.Contains(s, "%") && containsFold(s, "%3a%2f%2f") {
		s = userinfoEscRE.ReplaceAllString(s, "${1}REDACTED%40")
	}
	if containsFold(s, "authorization") {
		s = redactAuthHeaders(s)
	}
	if containsFold(s, "basic") || containsFold(s, "bearer") {
		for _, re := range []*regexp.Regexp{schemeCredRE, schemeCredEscRE} {
			s = re.ReplaceAllStringFunc(s, func(m string) string {
				sub := re.FindStringSubmatch(m)
				if !looksCredential(sub[3]) {
					return m
				}
				return sub[1] + sub[2] + Redacted
			})
		}
	}
	return s
}

// redactAuthHeaders replaces each Authorization header value, keeping the
// scheme word. A value that is already [Redacted] is left alone, so Scrub is
// idempotent.
func redactAuthHeaders(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range authHeaderRE.FindAllStringSubmatchIndex(s, -1) {
		valStart := m[6]
		if strings.HasPrefix(s[valStart:], Redacted) || strings.HasPrefix(s[valStart-1:], Redacted) {
			continue
		}
		b.WriteString(s[last:valStart])
		b.WriteString(Redacted)
		last = m[7]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// looksCredential tells base64 and JWT strings from English words: a
// credential is long enough and has a digit, a symbol, or a capital inside.
func looksCredential(s string) bool {
	if s == Redacted || strings.HasPrefix(s, "[") {
		return false
	}
	if len(s) < 8 {
		return false
	}
	for i, r := range s {
		switch {
		case unicode.IsDigit(r), strings.ContainsRune("+/=._~-", r):
			return true
		case i > 0 && unicode.IsUpper(r):
			return true
		}
	}
	return false
}

// replacer builds the ReplaceAttr rule. jsonOut says which handler it serves,
// because a value is checked in the form that handler will print.
func replacer(jsonOut bool) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 {
			switch a.Key {
			case slog.TimeKey, slog.LevelKey, slog.SourceKey:
				return a
			}
		}
		if SecretKey(a.Key) {
			return slog.String(a.Key, Redacted)
		}
		for _, g := range groups {
			// ReplaceAttr never sees a group itself, so a secret group
			// ("credentials") hides each of its members.
			if SecretKey(g) {
				return slog.String(a.Key, Redacted)
			}
		}
		if jsonOut && a.Value.Kind() == slog.KindDuration {
			// slog writes durations as nanoseconds; "1m30s" is what an
			// operator reads and what Go parses back.
			return slog.String(a.Key, a.Value.Duration().String())
		}
		a.Value = redactValue(a.Value, jsonOut)
		return a
	}
}

func redactValue(v slog.Value, jsonOut bool) (out slog.Value) {
	switch v.Kind() {
	case slog.KindString:
		if s := Scrub(v.String()); s != v.String() {
			return slog.StringValue(s)
		}
		return v
	case slog.KindAny:
	default:
		return v
	}
	x := v.Any()
	if x == nil {
		return v
	}
	defer func() {
		// A nil pointer inside an error or marshaler panics here as it would
		// in the handler; the handler already knows how to print that.
		if recover() != nil {
			out = v
		}
	}()
	if jsonOut {
		return redactForJSON(v, x)
	}
	return redactForText(v, x)
}

// redactForJSON mirrors slog.JSONHandler: errors print as Error() unless they
// marshal themselves, everything else through encoding/json.
func redactForJSON(v slog.Value, x any) slog.Value {
	_, marshals := x.(json.Marshaler)
	if err, ok := x.(error); ok && !marshals {
		return scrubbed(v, err.Error())
	}
	b, err := marshalJSON(x)
	if err != nil {
		return v // the handler prints its own !ERROR for this
	}
	if out, changed, err := redactJSON(b); err == nil && changed {
		return slog.AnyValue(json.RawMessage(out))
	}
	return v
}

// redactForText mirrors tint: TextMarshaler, byte slices, then %+v. Composite
// values are printed as redacted JSON instead of %+v, because %+v shows keys
// the rule cannot find and calls String on nested URLs.
func redactForText(v slog.Value, x any) slog.Value {
	if tm, ok := x.(encoding.TextMarshaler); ok {
		b, err := tm.MarshalText()
		if err != nil {
			return v
		}
		return scrubbed(v, string(b))
	}
	if _, ok := x.(error); !ok && isComposite(x) {
		if b, err := marshalJSON(x); err == nil {
			if out, _, err := redactJSON(b); err == nil {
				return slog.StringValue(string(out))
			}
		}
	}
	if b, ok := x.([]byte); ok {
		return scrubbed(v, string(b))
	}
	return scrubbed(v, fmt.Sprintf("%+v", x))
}

// scrubbed returns v untouched unless its printed form s needs scrubbing.
func scrubbed(v slog.Value, s string) slog.Value {
	if t := Scrub(s); t != s {
		return slog.StringValue(t)
	}
	return v
}

// isComposite reports structs, maps, slices and arrays (through pointers)
// that do not choose their own printed form with String or Format.
func isComposite(x any) bool {
	switch x.(type) {
	case fmt.Stringer, fmt.Formatter, []byte:
		return false
	}
	t := reflect.TypeOf(x)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice, reflect.Array:
		return true
	}
	return false
}

func marshalJSON(x any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as slog.JSONHandler does
	if err := enc.Encode(x); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// redactJSON rewrites one JSON value: members whose key is a [SecretKey]
// become "[redacted]", strings are [Scrub]bed. Member order is kept.
func redactJSON(b []byte) (out []byte, changed bool, err error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var buf bytes.Buffer
	r := jsonRedactor{dec: dec, out: &buf}
	if err := r.value(); err != nil {
		return nil, false, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, false, errors.New("logging: trailing data after JSON value")
	}
	return buf.Bytes(), r.changed, nil
}

type jsonRedactor struct {
	dec     *json.Decoder
	out     *bytes.Buffer
	changed bool
}

func (r *jsonRedactor) value() error {
	tok, err := r.dec.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			r.out.WriteByte('{')
			for first := true; r.dec.More(); first = false {
				k, err := r.dec.Token()
				if err != nil {
					return err
				}
				key, ok := k.(string)
				if !ok {
					return errors.New("logging: object key is not a string")
				}
				if !first {
					r.out.WriteByte(',')
				}
				r.writeString(key)
				r.out.WriteByte(':')
				if SecretKey(key) {
					already, err := r.skip()
					if err != nil {
						return err
					}
					r.writeString(Redacted)
					r.changed = r.changed || !already
					continue
				}
				if err := r.value(); err != nil {
					return err
				}
			}
			r.out.WriteByte('}')
		case '[':
			r.out.WriteByte('[')
			for first := true; r.dec.More(); first = false {
				if !first {
					r.out.WriteByte(',')
				}
				if err := r.value(); err != nil {
					return err
				}
			}
			r.out.WriteByte(']')
		default:
			return fmt.Errorf("logging: unexpected %v in JSON", t)
		}
		_, err := r.dec.Token() // the closing delimiter
		return err
	case string:
		s := Scrub(t)
		if s != t {
			r.changed = true
		}
		r.writeString(s)
	case json.Number:
		r.out.WriteString(t.String())
	case bool:
		fmt.Fprint(r.out, t)
	case nil:
		r.out.WriteString("null")
	}
	return nil
}

// skip consumes one whole value without writing it and reports whether it
// was already the string [Redacted].
func (r *jsonRedactor) skip() (redacted bool, err error) {
	depth := 0
	for first := true; ; first = false {
		tok, err := r.dec.Token()
		if err != nil {
			return false, err
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
		}
		if depth == 0 {
			return first && tok == Redacted, nil
		}
	}
}

func (r *jsonRedactor) writeString(s string) {
	b, _ := marshalJSON(s) // a string always marshals
	r.out.Write(b)
}
