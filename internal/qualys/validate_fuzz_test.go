package qualys

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// valOracle is encoding/xml's verdict on data: a strict Decoder reading
// every token. It accepts any declared encoding, since the validator does
// not transcode either.
func valOracle(data []byte) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	for {
		if _, err := d.Token(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
	}
}

// valSanitize replaces the bytes the validator lets through unchecked
// (non-ASCII and control characters) with 'x'. In a document the validator
// accepts, such bytes only occur in character data, attribute values,
// comments, PIs and the DOCTYPE, where 'x' changes no structure; the
// oracle then judges the structure alone.
func valSanitize(data []byte) []byte {
	out := bytes.Clone(data)
	for i, c := range out {
		if c >= 0x80 || c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			out[i] = 'x'
		}
	}
	return out
}

// valStricter are the faults the validator reports where encoding/xml is
// lenient on purpose or by design, each a choice documented in package xmlscan:
//   - NoRoot, Outside: encoding/xml is a tokenizer; it accepts an empty
//     body, several roots, and text or CDATA before or after the root.
//   - Strict: XML 1.0 rules encoding/xml skips (whitespace between
//     attributes, <!directives> other than one DOCTYPE in the prolog, the
//     declaration's place, PI target "xml", surrogate character references)
//     and non-ASCII names, which Qualys never sends.
//   - Limit: depth, name, entity and capture limits.
//   - Content: an ID or WARNING field that is not a number, which is not a
//     question of well-formedness.
var valStricter = map[xmlscan.Kind]bool{
	xmlscan.KindNoRoot:  true,
	xmlscan.KindOutside: true,
	xmlscan.KindStrict:  true,
	xmlscan.KindLimit:   true,
	xmlscan.KindContent: true,
}

func valSeeds(f *testing.F) {
	entries, err := os.ReadDir(filepath.Join("testdata", "samples"))
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".xml") {
			f.Add(readSample(f, e.Name()), uint8(0))
			f.Add(readSample(f, e.Name()), uint8(6))
		}
	}
	for _, s := range []string{
		`<a b='1' c = "2"/>`,
		"\xEF\xBB\xBF<?xml version='1.0'?><a>&lt;&#x41;</a>",
		`<!DOCTYPE a [<!ELEMENT a ANY><!-- > --><!ATTLIST a b CDATA "x>">]><a/>`,
		`<a><![CDATA[]]]]><!-- x --><?p q?>]]&gt;</a>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID> 5 </ID><ID_RANGE>7-9</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<p:a xmlns:p="u"><p:b/></p:a>`,
	} {
		f.Add([]byte(s), uint8(2))
	}
}

// FuzzValidator checks the validator against encoding/xml as the oracle of
// well-formedness, and checks that it passes bytes through unchanged, that
// the read size never changes its verdict, and that it never panics.
func FuzzValidator(f *testing.F) {
	valSeeds(f)
	g := valGrammar{r: rand.New(rand.NewPCG(5, 6))}
	for range 30 {
		f.Add(g.doc(), uint8(g.r.IntN(16)))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		valDifferential(t, data, int(chunk%16)+1)
	})
}

// TestValidatorDifferential runs the fuzz test's checks over documents from
// a grammar, most of them well-formed or nearly so, which random mutation
// rarely reaches.
func TestValidatorDifferential(t *testing.T) {
	g := valGrammar{r: rand.New(rand.NewPCG(3, 4))}
	for range 5000 {
		valDifferential(t, g.doc(), 1+g.r.IntN(5))
		if t.Failed() {
			return
		}
	}
}

func valDifferential(t *testing.T, data []byte, chunk int) {
	t.Helper()
	cfg := ValidatorConfig{Limits: NoLimits, Waits: DefaultWaits}
	out, err := valRead(NewValidator(bytes.NewReader(data), cfg), chunk)
	if !bytes.HasPrefix(data, out) || err == io.EOF && len(out) != len(data) {
		t.Fatalf("%q: bytes changed in transit: %d in, %d out", data, len(data), len(out))
	}
	whole, wholeErr := valRead(NewValidator(bytes.NewReader(data), cfg), len(data)+1)
	if err.Error() != wholeErr.Error() || err == io.EOF && !bytes.Equal(whole, data) {
		t.Fatalf("%q: verdict depends on the read size: %v, in one read %v", data, err, wholeErr)
	}

	var api APIError
	if errors.As(err, &api) {
		// An error document is judged by what it says, not by its form.
		return
	}
	if err == io.EOF {
		// The declaration's version is not checked (no Qualys body names
		// another), nor are characters (see valSanitize).
		oracle := valOracle(valSanitize(data))
		if oracle != nil && !strings.Contains(oracle.Error(), "unsupported version") {
			t.Fatalf("%q: accepted; encoding/xml: %v", data, oracle)
		}
		return
	}
	var me *MalformedError
	if !errors.As(err, &me) {
		t.Fatalf("%q: unexpected error type %T: %v", data, err, err)
	}
	if valStricter[me.kind] || bytes.Contains(data, []byte("xmlns")) {
		// encoding/xml maps prefixes to namespaces, so it may match
		// tags whose names differ; the validator matches bytes.
		return
	}
	if valOracle(data) == nil {
		t.Fatalf("%q: rejected (%v); encoding/xml accepts", data, err)
	}
}

// valGrammar writes random documents that exercise every construct the
// scanner knows, then mutates some of them a little.
type valGrammar struct {
	r  *rand.Rand
	sb strings.Builder
}

func (g *valGrammar) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g *valGrammar) misc() {
	switch g.r.IntN(5) {
	case 0:
		g.sb.WriteString("<!--" + g.pick("", " x ", "-x", "<a>", "]]>", "&bad;", "- -") + "-->")
	case 1:
		g.sb.WriteString("<?" + g.pick("p", "a:b", "xml-s", "x1") + g.pick("", " ", " d?", " <a>", " ?x") + "?>")
	default:
		g.sb.WriteString(g.pick(" ", "\n", "\t", "\r\n", ""))
	}
}

func (g *valGrammar) text() {
	for n := g.r.IntN(4); n > 0; n-- {
		g.sb.WriteString(g.pick("x", " ", "]", "]]", ">", "&amp;", "&lt;", "&#x41;", "&#65;", "&quot;", "\n", "\xc3\xa9", "'", "\"", "/", "?", "-", "="))
	}
}

func (g *valGrammar) elem(depth int) {
	name := g.pick("a", "b", "p:c", "_d", "e.f", "g-h", "A1", ":i")
	g.sb.WriteString("<" + name)
	for n := g.r.IntN(3); n > 0; n-- {
		q := g.pick("\"", "'")
		g.sb.WriteString(g.pick(" ", "\n", "  ") + g.pick("x", "y", "p:z", "w") + g.pick("=", " = ", "=\n") + q)
		for m := g.r.IntN(3); m > 0; m-- {
			v := g.pick("v", "&amp;", "&#65;", ">", "]]>", "'", "\"", " ")
			if v == q {
				v = "&quot;"
			}
			g.sb.WriteString(v)
		}
		g.sb.WriteString(q)
	}
	g.sb.WriteString(g.pick("", " ", "\n"))
	if depth > 3 || g.r.IntN(4) == 0 {
		g.sb.WriteString("/>")
		return
	}
	g.sb.WriteString(">")
	for n := g.r.IntN(4); n > 0; n-- {
		switch g.r.IntN(5) {
		case 0:
			g.elem(depth + 1)
		case 1:
			g.sb.WriteString("<![CDATA[" + g.pick("", "x", "]", "]]", "<a>", "&bad;", "]]]", "] ]>", "]>") + "]]>")
		case 2:
			g.misc()
		default:
			g.text()
		}
	}
	g.sb.WriteString("</" + name + g.pick("", " ", "\n") + ">")
}

func (g *valGrammar) doc() []byte {
	g.sb.Reset()
	if g.r.IntN(2) == 0 {
		g.sb.WriteString("<?xml version=\"1.0\"" + g.pick("", " encoding=\"UTF-8\"") + g.pick("", " ") + "?>")
	}
	g.misc()
	if g.r.IntN(2) == 0 {
		g.sb.WriteString("<!DOCTYPE a" + g.pick("", " SYSTEM \"x>y\"", " [<!ELEMENT a ANY><!-- > -->]", " PUBLIC 'p' \"s\"", " [<!ATTLIST a b CDATA '>'>]") + ">")
	}
	g.misc()
	g.elem(0)
	g.misc()
	g.misc()
	d := []byte(g.sb.String())
	const marks = "<>/&;]-?!\"' =xa[:"
	for n := g.r.IntN(3); n > 0 && len(d) > 0; n-- {
		i := g.r.IntN(len(d))
		switch g.r.IntN(4) {
		case 0: // delete a few bytes
			j := i + g.r.IntN(min(4, len(d)-i)+1)
			d = append(d[:i:i], d[j:]...)
		case 1: // insert a piece
			ins := g.pick("<", ">", "/", "&", ";", "]", "-", "?", "!", "\"", "'", " ", "=", "x", "<a>", "</a>", "\xff")
			d = append(d[:i:i], append([]byte(ins), d[i:]...)...)
		case 2: // replace a byte
			d[i] = marks[g.r.IntN(len(marks))]
		case 3: // cut short
			d = d[:i]
		}
	}
	return d
}
