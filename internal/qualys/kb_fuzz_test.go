package qualys

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// kbSeeds are the KnowledgeBase samples and a few made-up answers.
func kbSeeds(tb testing.TB) [][]byte {
	entries, err := os.ReadDir(filepath.Join("testdata", "samples"))
	if err != nil {
		tb.Fatal(err)
	}
	var seeds [][]byte
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".xml") && (strings.HasPrefix(e.Name(), "kb_") || strings.Contains(e.Name(), "kb-")) {
			seeds = append(seeds, readSample(tb, e.Name()))
		}
	}
	for _, s := range []string{
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><QID> 5 </QID></VULN><VULN><QID><![CDATA[7]]></QID><T><![CDATA[]]></T></VULN></VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT><!-- keep-alive -->`,
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><!-- k --><VULN_LIST/><WARNING><CODE>1980</CODE><URL>u</URL></WARNING></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><ID_SET><ID>6</ID><ID_RANGE>8-9</ID_RANGE></ID_SET></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
		`<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><VULN_LIST><VULN><QID>&#53;1</QID><X><QID>y</QID></X></VULN></VULN_LIST></RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// kbOracleQIDs is encoding/xml's reading of the QIDs a KnowledgeBase
// answer holds: the text of each RESPONSE/VULN_LIST/VULN/QID, trimmed.
func kbOracleQIDs(data []byte) ([]string, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	want := []string{RootKB, "RESPONSE", "VULN_LIST", "VULN", "QID"}
	var path []string
	var text []byte
	var qids []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return qids, nil
		}
		if err != nil {
			return nil, err
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			name := tok.Name.Local
			if tok.Name.Space != "" {
				name = "?" // a prefixed name is not one the validator reads
			}
			path = append(path, name)
			text = text[:0]
		case xml.CharData:
			text = append(text, tok...)
		case xml.EndElement:
			if slices.Equal(path, want) {
				qids = append(qids, string(bytes.Trim(text, " \t\r\n")))
			}
			path = path[:len(path)-1]
		}
	}
}

// kbDifferential checks the validator on a KnowledgeBase batch answer:
// bytes unchanged, a verdict that does not depend on the read size, and
// for an accepted answer, well-formed per encoding/xml and exactly the
// QIDs encoding/xml reads there.
func kbDifferential(t *testing.T, data []byte, chunk int) {
	t.Helper()
	var qids, again []uint64
	cfg := func(ids *[]uint64) ValidatorConfig {
		return ValidatorConfig{Root: RootKB, list: kbVulnList, Limits: NoLimits, Waits: DefaultWaits,
			OnID: func(id uint64) { *ids = append(*ids, id) }}
	}
	out, err := valRead(NewValidator(bytes.NewReader(data), cfg(&qids)), chunk)
	if !bytes.HasPrefix(data, out) || err == io.EOF && len(out) != len(data) {
		t.Fatalf("%q: bytes changed in transit: %d in, %d out", data, len(data), len(out))
	}
	_, wholeErr := valRead(NewValidator(bytes.NewReader(data), cfg(&again)), len(data)+1)
	if err.Error() != wholeErr.Error() {
		t.Fatalf("%q: verdict depends on the read size: %v, in one read %v", data, err, wholeErr)
	}
	var api APIError
	var me *MalformedError
	switch {
	case errors.As(err, &api), errors.Is(err, ErrUnexpectedRoot):
		return
	case err == io.EOF:
	case errors.As(err, &me):
		return
	default:
		t.Fatalf("%q: unexpected error type %T: %v", data, err, err)
	}
	if !slices.Equal(qids, again) {
		t.Fatalf("%q: QIDs %v, in one read %v", data, qids, again)
	}
	oracle, oerr := kbOracleQIDs(valSanitize(data))
	if oerr != nil {
		if !strings.Contains(oerr.Error(), "unsupported version") {
			t.Fatalf("%q: accepted; encoding/xml: %v", data, oerr)
		}
		return
	}
	if len(oracle) != len(qids) {
		t.Fatalf("%q: QIDs %v; encoding/xml reads %q", data, qids, oracle)
	}
	for i, s := range oracle {
		if id, ok := valParseID([]byte(s)); !ok || id != qids[i] {
			t.Fatalf("%q: QID %d is %d; encoding/xml reads %q", data, i, qids[i], s)
		}
	}
}

// FuzzValidatorKB is FuzzValidator for KnowledgeBase answers, with the
// QIDs checked against encoding/xml's reading.
func FuzzValidatorKB(f *testing.F) {
	for _, s := range kbSeeds(f) {
		f.Add(s, uint8(0))
		f.Add(s, uint8(6))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		kbDifferential(t, data, int(chunk%16)+1)
	})
}

// TestValidatorKBDifferential runs the fuzz test's checks over small
// mutations of the seeds, which reach the QID rules more often than
// random bytes do.
func TestValidatorKBDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 10))
	all := kbSeeds(t)
	// The small seeds only: each mutation is read twice, in pieces of a
	// few bytes, and the 82 KB one would take most of the time.
	seeds := slices.DeleteFunc(slices.Clone(all), func(s []byte) bool { return len(s) > 16<<10 })
	pieces := []string{"<", ">", "/", "&", "]]>", "<QID>1</QID>", "<VULN>", "</VULN>", "<VULN/>", "<ID_SET>", "<!--", "-->", "0", "x", " ", "<![CDATA["}
	for i := range 2000 {
		d := slices.Clone(seeds[i%len(seeds)])
		for n := 1 + r.IntN(3); n > 0 && len(d) > 0; n-- {
			at := r.IntN(len(d))
			switch r.IntN(3) {
			case 0:
				d = append(d[:at:at], d[min(len(d), at+1+r.IntN(8)):]...)
			case 1:
				d = append(d[:at:at], append([]byte(pieces[r.IntN(len(pieces))]), d[at:]...)...)
			case 2:
				d = d[:at]
			}
		}
		kbDifferential(t, d, 1+r.IntN(9))
		if t.Failed() {
			return
		}
	}
	for _, s := range all {
		kbDifferential(t, s, 512)
	}
}
