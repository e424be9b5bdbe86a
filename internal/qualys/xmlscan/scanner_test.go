package xmlscan

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// recorder is a Handler that writes down what it hears. By default every
// element's Context is its depth with WantText; ctxOf overrides that by
// name, watch goes to Init, and startErr, textErr and endErr make a hook
// fail.
type recorder struct {
	log      []string
	text     []byte // text heard since the last element event
	ctxOf    map[string]Context
	watch    []string
	startErr map[string]error
	textErr  error
	endErr   map[Context]error
	offsets  bool // log hook offsets too
}

func (r *recorder) flush() {
	if len(r.text) > 0 {
		r.log = append(r.log, "text "+string(r.text))
		r.text = r.text[:0]
	}
}

func (r *recorder) Start(parent Context, name []byte, off int64) (Context, error) {
	r.flush()
	if err := r.startErr[string(name)]; err != nil {
		return Skip, err
	}
	ctx := 1 | WantText
	if parent != Document {
		ctx = parent&^WantText + 1 | WantText
	}
	if c, ok := r.ctxOf[string(name)]; ok {
		ctx = c
	}
	r.log = append(r.log, fmt.Sprintf("<%s %x>", name, uint8(ctx)))
	if r.offsets {
		r.log[len(r.log)-1] += fmt.Sprintf("@%d", off)
	}
	return ctx, nil
}

func (r *recorder) Text(_ Context, p []byte, _ int64) error {
	if r.textErr != nil {
		return r.textErr
	}
	r.text = append(r.text, p...)
	return nil
}

func (r *recorder) End(ctx Context, off int64) error {
	r.flush()
	if err := r.endErr[ctx]; err != nil {
		return err
	}
	r.log = append(r.log, fmt.Sprintf("</%x>", uint8(ctx)))
	if r.offsets {
		r.log[len(r.log)-1] += fmt.Sprintf("@%d", off)
	}
	return nil
}

// scanChunks runs a fresh scanner for r over doc in chunks of n bytes.
func scanChunks(r *recorder, doc []byte, n int) *Scanner {
	var s Scanner
	s.Init(r, r.watch)
	for len(doc) > 0 {
		k := min(n, len(doc))
		s.Scan(doc[:k])
		doc = doc[k:]
	}
	s.Finish()
	r.flush()
	return &s
}

// chunkSizes are the read sizes every test scans with: a scanner resumed
// anywhere must hear the same.
var chunkSizes = []int{1, 2, 3, 5, 7, 1 << 20}

func TestScannerEvents(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"nested", `<a>x<b>y</b>z</a>`, []string{"<a 81>", "text x", "<b 82>", "text y", "</82>", "text z", "</81>"}},
		{"empty elements", `<a><b/><c /></a>`, []string{"<a 81>", "<b 82>", "</82>", "<c 82>", "</82>", "</81>"}},
		{"references and CDATA", `<a>&lt;<![CDATA[<]]]]>&#x41;]&gt;</a>`, []string{"<a 81>", "text <<]]A]>", "</81>"}},
		{"markup around", "\xEF\xBB\xBF<?xml version=\"1.0\"?>\n<!DOCTYPE a [<!ELEMENT a ANY>]>\n<!-- c -->" +
			`<a k="v" l='&amp;'><!-- x --><?p q?>t</a ><?p?>` + "\n",
			[]string{"<a 81>", "text t", "</81>"}},
		{"split tag", "<a\n><b\nk=\"1\"\n/></a\n>", []string{"<a 81>", "<b 82>", "</82>", "</81>"}},
	}
	for _, tt := range tests {
		for _, n := range chunkSizes {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				r := &recorder{}
				s := scanChunks(r, []byte(tt.doc), n)
				if s.Err() != nil || s.Stopped() || !s.RootSeen() {
					t.Fatalf("Err %v, Stopped %v, RootSeen %v", s.Err(), s.Stopped(), s.RootSeen())
				}
				if !slices.Equal(r.log, tt.want) {
					t.Fatalf("heard %q, want %q", r.log, tt.want)
				}
			})
		}
	}
}

// Skip elements get no End and their children no Start, but for watched
// names; elements without WantText get no Text, and a parent's text goes
// on after a child closes.
func TestScannerContexts(t *testing.T) {
	doc := `<a>1<s>x<t>y<v/></t><v>u</v></s>2<n>z<w>3</w></n>4</a>`
	want := []string{"<a 81>", "text 1", "<s 0>", "<v 81>", "</81>", "<v 81>", "text u", "</81>", "text 2", "<n 5>", "<w 6>", "</6>", "</5>", "text 4", "</81>"}
	for _, n := range chunkSizes {
		r := &recorder{ctxOf: map[string]Context{"s": Skip, "n": 5, "w": 6}, watch: []string{"v"}}
		if s := scanChunks(r, []byte(doc), n); s.Err() != nil {
			t.Fatal(s.Err())
		}
		if !slices.Equal(r.log, want) {
			t.Fatalf("read size %d: heard %q, want %q", n, r.log, want)
		}
	}
}

func TestScannerOffsets(t *testing.T) {
	doc := `<a b="1"><c/><dd>&amp;</dd  ></a>`
	want := []string{"<a 81>@2", "<c 82>@11", "</82>@12", "<dd 82>@16", "text &", "</82>@28", "</81>@32"}
	for _, n := range chunkSizes {
		r := &recorder{offsets: true}
		if s := scanChunks(r, []byte(doc), n); s.Err() != nil {
			t.Fatal(s.Err())
		}
		if !slices.Equal(r.log, want) {
			t.Fatalf("read size %d: heard %q, want %q", n, r.log, want)
		}
	}
}

func TestScannerHookErrors(t *testing.T) {
	doc := `<a><b>text</b><c/></a>`
	own := &Error{Kind: KindLimit, Offset: 1, Msg: "mine"}
	plain := errors.New("refused")
	tests := []struct {
		name    string
		r       recorder
		stopped bool
		want    *Error // nil: no fault
		heard   int    // events before the scan ended
	}{
		{"stop at the root", recorder{startErr: map[string]error{"a": ErrStop}}, true, nil, 0},
		{"stop inside", recorder{startErr: map[string]error{"c": ErrStop}}, true, nil, 4},
		{"wrapped stop", recorder{startErr: map[string]error{"b": fmt.Errorf("x: %w", ErrStop)}}, true, nil, 1},
		{"own error", recorder{startErr: map[string]error{"b": own}}, false, own, 1},
		{"plain error in Start", recorder{startErr: map[string]error{"c": plain}}, false, &Error{Kind: KindContent, Offset: 16, Msg: "refused"}, 4},
		{"plain error in End", recorder{endErr: map[Context]error{0x82: plain}}, false, &Error{Kind: KindContent, Offset: 13, Msg: "refused"}, 3},
		{"plain error in Text", recorder{textErr: plain}, false, &Error{Kind: KindContent, Offset: 6, Msg: "refused"}, 2},
	}
	for _, tt := range tests {
		for _, n := range chunkSizes {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				r := tt.r
				s := scanChunks(&r, []byte(doc), n)
				if s.Stopped() != tt.stopped {
					t.Errorf("Stopped %v, want %v", s.Stopped(), tt.stopped)
				}
				switch got := s.Err(); {
				case tt.want == nil && got != nil:
					t.Errorf("Err %v, want none", got)
				case tt.want == own && got != own:
					t.Errorf("Err %v, want the hook's own", got)
				case tt.want != nil && (got == nil || *got != *tt.want):
					t.Errorf("Err %+v, want %+v", got, tt.want)
				}
				if len(r.log) != tt.heard {
					t.Errorf("heard %q, want %d events", r.log, tt.heard)
				}
			})
		}
	}
}

func TestScannerFaults(t *testing.T) {
	tests := []struct {
		doc  string
		want Error
	}{
		{"", Error{KindNoRoot, 0, "no root element"}},
		{"<a><b>", Error{KindCutShort, 6, "unclosed element in /a/b"}},
		{"<a><b x='", Error{KindCutShort, 9, "unclosed start tag in /a/b"}},
		{"<a/><!--", Error{KindCutShort, 8, "unclosed comment outside the root element"}},
		{"<a></b>", Error{KindMismatch, 5, "end tag does not match <a>"}},
		{"<a>&#xD800;</a>", Error{KindStrict, 10, "character reference &#xD800; to a surrogate"}},
		{"<a>&#99999999;</a>", Error{KindEntity, 13, "character reference &#99999999; out of range"}},
		{"<a/>x", Error{KindOutside, 4, "content after the root element"}},
		{"<a>" + strings.Repeat("<b>", MaxDepth), Error{KindLimit, 3 + 3*(MaxDepth-1), fmt.Sprintf("elements nested deeper than %d", MaxDepth)}},
	}
	for _, tt := range tests {
		for _, n := range chunkSizes {
			s := scanChunks(&recorder{}, []byte(tt.doc), n)
			if got := s.Err(); got == nil || *got != tt.want {
				t.Fatalf("%.20q, read size %d: %+v, want %+v", tt.doc, n, got, tt.want)
			}
		}
	}
}
