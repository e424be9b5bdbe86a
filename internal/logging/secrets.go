package logging

import (
	"encoding/base64"
	"encoding/json"
	"html"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// MinSecretLen is the shortest credential [Scrub] hides wherever it appears,
// inside words too. A shorter one is hidden only where it stands as a whole
// token.
//
// Why both rules, and why this split: scrubbing by substring is the only safe
// way for a real credential (a long password glued to other text — an echoed
// form body, a base64 blob, "user=bobhunter2" — must still go), but a short
// one collides with ordinary text, and then the scrubbing itself gives it
// away: with the password "p", "307 Temporary Redirect" became
// "307 Tem[redacted]orary Redirect". So the configuration refuses secrets
// shorter than this (config.Load, exit 2, naming the variable), and the
// credentials the process holds without choosing them — a proxy password in
// HTTPS_PROXY, a test's "p" — are scrubbed as whole tokens: "p" in
// "u:p@proxy" or "pass=p" goes, the p of "Temporary" stays. Eight is the
// floor of Qualys' own password policy and of MinIO's secret key; at that
// length an accidental match in log text is rare and costs a word, not the
// secret.
const MinSecretLen = 8

// Secrets is a set of credentials to hide in text, each in every encoding
// it reaches a log or an error in: as is, URL query- and path-escaped (hex
// in upper or lower case), HTML-escaped (named and numeric), JSON-escaped,
// and base64 (standard and URL alphabets, at each of the three alignments a
// credential can have inside a longer encoded value, as the password does
// in a Basic "user:password" header), and those base64 forms escaped again
// ("Authorization%3A+Basic+dXNlcjpw…%3D"). The zero value is empty and
// ready; a Secrets is safe for concurrent use.
type Secrets struct {
	mu  sync.Mutex
	set atomic.Pointer[compiled]
	raw []string
}

// compiled is an immutable snapshot: Scrub reads it without a lock.
type compiled struct {
	long  *strings.Replacer // encodings of MinSecretLen or more: anywhere
	short []string          // encodings of shorter ones: whole tokens only
}

// Add records secrets; empty strings are ignored.
func (s *Secrets) Add(secrets ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for _, v := range secrets {
		if v != "" && !slices.Contains(s.raw, v) {
			s.raw = append(s.raw, v)
			changed = true
		}
	}
	if changed {
		s.set.Store(compile(s.raw))
	}
}

// AddBasic records a Basic-auth pair: the password, and the header value
// base64("user:password") whole, which is what a gateway echoes.
func (s *Secrets) AddBasic(user, password string) {
	if password == "" {
		return
	}
	s.Add(password, base64.StdEncoding.EncodeToString([]byte(user+":"+password)))
}

// Scrub hides every recorded secret, then applies the package's rules for
// credentials it does not know ([Scrub]'s URL userinfo, Authorization and
// Basic/Bearer values).
func (s *Secrets) Scrub(text string) string {
	return scrubPatterns(s.scrubKnown(text))
}

func (s *Secrets) scrubKnown(text string) string {
	c := s.set.Load()
	if c == nil || text == "" {
		return text
	}
	if c.long != nil {
		text = c.long.Replace(text)
	}
	for _, enc := range c.short {
		text = replaceTokens(text, enc)
	}
	return text
}

func compile(raw []string) *compiled {
	seen := map[string]bool{}
	var long, short []string
	for _, v := range raw {
		for _, enc := range encodings(v) {
			if seen[enc] || strings.Contains(Redacted, enc) && (len(enc) >= MinSecretLen || !strings.ContainsFunc(enc, isAlnum)) {
				continue // Redacted itself must survive a second Scrub
			}
			seen[enc] = true
			if len(enc) >= MinSecretLen {
				long = append(long, enc)
			} else {
				short = append(short, enc)
			}
		}
	}
	// Longest first: strings.Replacer tries its pairs in order at each
	// position, so a whole Basic value goes before the password inside it.
	byLen := func(a, b string) int { return len(b) - len(a) }
	slices.SortStableFunc(long, byLen)
	slices.SortStableFunc(short, byLen)
	c := &compiled{short: short}
	if len(long) > 0 {
		pairs := make([]string, 0, 2*len(long))
		for _, enc := range long {
			pairs = append(pairs, enc, Redacted)
		}
		c.long = strings.NewReplacer(pairs...)
	}
	return c
}

// encodings lists the forms of v to hide. Base64 forms are made only for
// secrets long enough to scrub anywhere: a few base64 characters of a short
// one would match at random.
func encodings(v string) []string {
	bases := []string{v}
	if len(v) >= MinSecretLen {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			bases = append(bases, enc.EncodeToString([]byte(v)))
			for k := range 3 {
				bases = append(bases, base64Inner(enc, v, k))
			}
		}
	}
	var out []string
	for _, b := range bases {
		q, p := url.QueryEscape(b), url.PathEscape(b)
		out = append(out, b, q, p, lowerHex(q), lowerHex(p), html.EscapeString(b),
			numericEntities(b), jsonInner(b), quoteInner(b))
	}
	return out
}

// base64Inner returns the base64 characters that encode v's bits alone when
// v starts k bytes (mod 3) into a longer encoded value: every such
// encoding, whatever comes before and after, contains them.
func base64Inner(enc *base64.Encoding, v string, k int) string {
	b := make([]byte, k+len(v)+2)
	copy(b[k:], v)
	s := enc.EncodeToString(b)
	first := (8*k + 5) / 6       // first character whose 6 bits all lie in v
	last := 8 * (k + len(v)) / 6 // one past the last such character
	return s[first:last]
}

// lowerHex writes a percent-escaped text's hex digits in lower case
// ("%2f"): RFC 3986 makes both cases equivalent, and many encoders (.NET's
// UrlEncode among them) write these.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			for j := i + 1; j <= i+2; j++ {
				if 'A' <= b[j] && b[j] <= 'F' {
					b[j] += 'a' - 'A'
				}
			}
			i += 2
		}
	}
	return string(b)
}

// numericEntities writes every character but letters and digits as an HTML
// numeric reference (&#43; for '+'), as some gateways echo headers.
func numericEntities(s string) string {
	var b strings.Builder
	for _, r := range s {
		if isAlnum(r) {
			b.WriteRune(r)
		} else {
			b.WriteString("&#" + strconv.Itoa(int(r)) + ";")
		}
	}
	return b.String()
}

// jsonInner is s as it appears inside a JSON string.
func jsonInner(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b[1 : len(b)-1])
}

// quoteInner is s as it appears inside a Go %q.
func quoteInner(s string) string {
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}

func isAlnum(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9'
}

// replaceTokens replaces tok where it is not glued to a letter or digit on
// a side where tok itself begins or ends with one.
func replaceTokens(s, tok string) string {
	if tok == "" || !strings.Contains(s, tok) {
		return s
	}
	var b strings.Builder
	for i := 0; ; {
		j := strings.Index(s[i:], tok)
		if j < 0 {
			b.WriteString(s[i:])
			return b.String()
		}
		j += i
		end := j + len(tok)
		glued := j > 0 && isAlnum(rune(s[j-1])) && isAlnum(rune(tok[0])) ||
			end < len(s) && isAlnum(rune(s[end])) && isAlnum(rune(tok[len(tok)-1]))
		if glued {
			b.WriteString(s[i : j+1])
			i = j + 1
			continue
		}
		b.WriteString(s[i:j])
		b.WriteString(Redacted)
		i = end
	}
}

// held is every credential this process holds: what [Hold] and
// [HoldBasic] were given. [Scrub] hides them.
var held Secrets

// Hold records credentials the process holds so that [Scrub], and so every
// logger [New] builds and every error text scrubbed for a record, hides
// them in every encoding. config.Load holds every Secret it reads and the
// proxy credentials of HTTPS_PROXY and HTTP_PROXY; a component given a
// credential another way holds it itself.
func Hold(secrets ...string) { held.Add(secrets...) }

// HoldBasic is [Hold] for a Basic-auth pair: the password and the whole
// base64 header value.
func HoldBasic(user, password string) { held.AddBasic(user, password) }
