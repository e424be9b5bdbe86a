package xmlscan

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// childCtx is the Context the recorder gives a child of parent.
func childCtx(parent Context) Context {
	if parent == Document {
		return 1 | WantText
	}
	return parent&^WantText + 1 | WantText
}

// stdlibEvents is what encoding/xml's strict Decoder reads in data, in the
// recorder's words, or its error.
func stdlibEvents(data []byte) ([]string, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	var log []string
	var text []byte
	flush := func() {
		if len(text) > 0 {
			log = append(log, "text "+string(text))
			text = text[:0]
		}
	}
	stack := []Context{Document}
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			return log, nil
		} else if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			flush()
			name := tok.Name.Local
			if tok.Name.Space != "" {
				name = tok.Name.Space + ":" + name
			}
			ctx := childCtx(stack[len(stack)-1])
			stack = append(stack, ctx)
			log = append(log, fmt.Sprintf("<%s %x>", name, uint8(ctx)))
		case xml.EndElement:
			if len(stack) == 1 {
				return nil, fmt.Errorf("end tag %v outside the root", tok.Name)
			}
			flush()
			log = append(log, fmt.Sprintf("</%x>", uint8(stack[len(stack)-1])))
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 1 {
				text = append(text, tok...)
			}
		}
	}
}

// lineEnds drops CR and LF from the recorded text: encoding/xml turns
// "\r\n" and "\r" into "\n", the scanner passes bytes as they are.
func lineEnds(log []string) []string {
	out := make([]string, len(log))
	for i, e := range log {
		out[i] = strings.NewReplacer("\r", "", "\n", "").Replace(e)
	}
	return out
}

// FuzzScanner checks that the scanner never panics, that the chunking of
// a stream changes nothing it reports, and that in a document both it and
// encoding/xml accept, both find the same elements and text. Whether the
// two agree on which documents are well-formed is FuzzValidator's
// question, in package qualys.
func FuzzScanner(f *testing.F) {
	for i, s := range []string{
		`<a>x<b>y</b>z</a>`,
		`<a b='1' c = "2"><c/></a>`,
		"\xEF\xBB\xBF<?xml version='1.0'?><a>&lt;&#x41;&#65;&quot;</a>",
		`<!DOCTYPE a [<!ELEMENT a ANY><!-- > --><!ATTLIST a b CDATA "x>">]><a/>`,
		`<a><![CDATA[]]]]><!-- x --><?p q?>]]&gt;<![CDATA[<b>]]></a>`,
		"<a\r\n>\r\n<b\n/>\r</a\t>\n<!-- end -->",
		`<p:a xmlns:p="u"><p:b/></p:a>`,
		`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID> 5 </ID><ID_RANGE>7-9</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`,
		`<a><b></a>`,
		`<a>&bad;</a>`,
		`<a><!-- x -- y --></a>`,
	} {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		whole := &recorder{}
		sw := scanChunks(whole, data, len(data)+1)
		parts := &recorder{}
		sp := scanChunks(parts, data, int(chunk%16)+1)
		ew, ep := sw.Err(), sp.Err()
		if !slices.Equal(whole.log, parts.log) || (ew == nil) != (ep == nil) || ew != nil && *ew != *ep {
			t.Fatalf("%q: chunks of %d change what is heard:\n%q, %v\nin one: %q, %v", data, chunk%16+1, parts.log, ep, whole.log, ew)
		}
		if ew != nil {
			if ew.Offset < 0 || ew.Offset > int64(len(data)) {
				t.Fatalf("%q: fault outside the stream: %+v", data, ew)
			}
			return
		}
		want, err := stdlibEvents(data)
		if err != nil {
			return
		}
		if got, want := lineEnds(whole.log), lineEnds(want); !slices.Equal(got, want) {
			t.Fatalf("%q: heard %q; encoding/xml reads %q", data, got, want)
		}
	})
}
