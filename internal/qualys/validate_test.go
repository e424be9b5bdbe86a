package qualys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// valRead drains v through reads of size n and returns what came out and
// the error that ended it (io.EOF on success).
func valRead(v *Validator, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, n)
	for {
		k, err := v.Read(buf)
		out = append(out, buf[:k]...)
		if err != nil {
			return out, err
		}
	}
}

func valCheck(t *testing.T, body []byte, cfg ValidatorConfig, n int) (Summary, error) {
	t.Helper()
	v := NewValidator(bytes.NewReader(body), cfg)
	out, err := valRead(v, n)
	if err == io.EOF && !bytes.Equal(out, body) {
		t.Fatalf("read size %d: bytes changed in transit", n)
	}
	if !bytes.HasPrefix(body, out) {
		t.Fatalf("read size %d: output is not a prefix of the body", n)
	}
	// The verdict is final.
	if k, again := v.Read(make([]byte, 8)); k != 0 || again != err {
		t.Fatalf("read after the verdict: %d, %v; want 0, %v", k, again, err)
	}
	return v.Summary(), err
}

func valKind(err error) xmlscan.Kind {
	var me *MalformedError
	if errors.As(err, &me) {
		return me.kind
	}
	return 0
}

func TestValidatorSamples(t *testing.T) {
	tests := []struct {
		file       string
		root       string
		status     int
		hosts      int
		detections int
		first      uint64
		last       uint64
		warning    *Warning

		class failure.Class // ClassUnknown: accepted
		code  int
		wait  time.Duration
	}{
		{file: "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml", root: RootDetections, status: 200,
			hosts: 1, detections: 3, first: 6506432, last: 6506432},
		{file: "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml", root: RootDetections, status: 200,
			hosts: 2, detections: 8, first: 143111841, last: 10112200},
		{file: "hld_1host_qds_unique-vuln-id_warning-truncated_elastic-fixture.xml", root: RootDetections, status: 200,
			hosts: 1, detections: 2, first: 12048633, last: 12048633, warning: &Warning{
				Code: 1980,
				Text: "1000 record limit exceeded. Use URL to get next batch of results.",
				URL:  "http://qualys_vmdr:8090/api/2.0/fo/asset/host/vm/detection/?action=list&truncation_limit=1000&id_min=5641289",
			}},
		{file: "hld_no-matching-hosts_empty-response_recorded_200.xml", root: RootDetections, status: 200},
		{file: "hostlist_details-none_idset_recorded_200.xml", root: RootHostList, status: 200,
			hosts: 1, first: 107800671, last: 107800671},
		{file: "hostlist_details-none_empty_recorded_200.xml", root: RootHostList, status: 200},
		{file: "hostlist_details-none_empty_recorded_200.xml", root: "", status: 200},

		{file: "error_simple-return_1905_bad-ids_recorded_400.xml", root: RootDetections, status: 400,
			class: failure.ClassPermanent, code: 1905},
		{file: "error_simple-return_1960_concurrency-limit_mock_409.xml", root: RootDetections, status: 409,
			class: failure.ClassBackPressure, code: 1960, wait: DefaultWaits.Concurrency},
		{file: "error_simple-return_1965_rate-limit_mock_409.xml", root: RootDetections, status: 409,
			class: failure.ClassBackPressure, code: 1965, wait: 68928 * time.Second},
		{file: "error_simple-return_2001_account-expired_recorded_200.xml", root: RootDetections, status: 200,
			class: failure.ClassFleetWide, code: 2001},
		{file: "error_simple-return_2001_account-expired_recorded_200.xml", root: "", status: 200,
			class: failure.ClassFleetWide, code: 2001},
		{file: "error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml", root: RootDetections, status: 200,
			class: failure.ClassRetryable, code: 999},
	}
	for _, tt := range tests {
		body := readSample(t, tt.file)
		for _, n := range []int{1, 7, 64 << 10} {
			t.Run(fmt.Sprintf("%s/root=%q/read=%d", tt.file, tt.root, n), func(t *testing.T) {
				var ids []uint64
				cfg := ValidatorConfig{
					Endpoint: "/api/2.0/fo/asset/host/vm/detection/", Status: tt.status, Root: tt.root,
					OnID:   func(id uint64) { ids = append(ids, id) },
					Limits: NoLimits, Waits: DefaultWaits,
				}
				sum, err := valCheck(t, body, cfg, n)
				if sum.Bytes != int64(len(body)) {
					t.Errorf("Bytes = %d, want %d", sum.Bytes, len(body))
				}
				if tt.class != failure.ClassUnknown {
					var api APIError
					if !errors.As(err, &api) {
						t.Fatalf("err = %v, want an APIError", err)
					}
					if api.Code != tt.code || api.Status != tt.status || api.Endpoint != cfg.Endpoint {
						t.Errorf("APIError = %+v, want code %d, status %d, endpoint set", api, tt.code, tt.status)
					}
					if got := failure.ClassOf(err); got != tt.class {
						t.Errorf("class = %v, want %v", got, tt.class)
					}
					if got := failure.WaitOf(err); got != tt.wait {
						t.Errorf("wait = %v, want %v", got, tt.wait)
					}
					if sum.Root != api.Root {
						t.Errorf("Summary.Root = %q, want %q", sum.Root, api.Root)
					}
					return
				}
				if err != io.EOF {
					t.Fatalf("err = %v, want io.EOF", err)
				}
				if sum.Hosts != tt.hosts || sum.Detections != tt.detections || sum.FirstID != tt.first || sum.LastID != tt.last {
					t.Errorf("summary = %+v, want hosts %d, detections %d, IDs %d…%d", sum, tt.hosts, tt.detections, tt.first, tt.last)
				}
				if len(ids) != tt.hosts {
					t.Errorf("OnID saw %v, want %d IDs", ids, tt.hosts)
				}
				if (sum.Warning == nil) != (tt.warning == nil) || sum.Warning != nil && *sum.Warning != *tt.warning {
					t.Errorf("warning = %+v, want %+v", sum.Warning, tt.warning)
				}
			})
		}
	}
}

// valReaders are the read patterns every document must survive unchanged.
var valReaders = []struct {
	name string
	wrap func(io.Reader) io.Reader
	n    int // read buffer size
}{
	{"buf1", func(r io.Reader) io.Reader { return r }, 1},
	{"buf7", func(r io.Reader) io.Reader { return r }, 7},
	{"buf64k", func(r io.Reader) io.Reader { return r }, 64 << 10},
	{"OneByteReader", iotest.OneByteReader, 32 << 10},
	{"HalfReader", iotest.HalfReader, 32 << 10},
	{"DataErrReader", iotest.DataErrReader, 32 << 10},
}

func TestValidatorByteExact(t *testing.T) {
	docs := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join("testdata", "samples"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".xml") {
			docs[e.Name()] = readSample(t, e.Name())
		}
	}
	gen := valGenHLD(valGenConfig{Hosts: 20, Detections: 5, Seed: 1, Warning: true})
	docs["generated"] = gen.Body
	for name, body := range docs {
		var want error
		for _, rd := range valReaders {
			t.Run(name+"/"+rd.name, func(t *testing.T) {
				v := NewValidator(rd.wrap(bytes.NewReader(body)), ValidatorConfig{Limits: NoLimits, Waits: DefaultWaits})
				out, err := valRead(v, rd.n)
				if !bytes.Equal(out, body) {
					t.Fatalf("%d bytes out, %d in, or bytes changed", len(out), len(body))
				}
				// Every read pattern reaches the same verdict.
				if want == nil {
					want = err
				} else if err.Error() != want.Error() {
					t.Fatalf("verdict %v, with other readers %v", err, want)
				}
				if name == "generated" {
					if err != io.EOF {
						t.Fatalf("err = %v", err)
					}
					s := v.Summary()
					if s.Hosts != gen.Hosts || s.Detections != gen.Detections || s.FirstID != gen.FirstID || s.LastID != gen.LastID ||
						s.Warning == nil || s.Warning.URL != gen.WarningURL {
						t.Fatalf("summary %+v, want %+v", s, gen)
					}
				}
			})
		}
	}
}

// valTailOK reports whether tail is whitespace and whole comments only:
// what may be lost after the root closes without losing data.
func valTailOK(tail []byte) bool {
	for {
		tail = bytes.TrimLeft(tail, " \t\r\n")
		if len(tail) == 0 {
			return true
		}
		if !bytes.HasPrefix(tail, []byte("<!--")) {
			return false
		}
		end := bytes.Index(tail[4:], []byte("-->"))
		if end < 0 {
			return false
		}
		tail = tail[4+end+3:]
	}
}

func TestValidatorTruncatedEverywhere(t *testing.T) {
	files := []struct{ file, root string }{
		{"hld_1host_3det_multiline-cdata_jupiterone-fixture.xml", RootDetections},
		{"hld_1host_qds_unique-vuln-id_warning-truncated_elastic-fixture.xml", RootDetections},
		{"hostlist_details-none_idset_recorded_200.xml", RootHostList},
	}
	for _, f := range files {
		t.Run(f.file, func(t *testing.T) {
			body := readSample(t, f.file)
			closeTag := []byte("</" + f.root + ">")
			rootEnd := bytes.LastIndex(body, closeTag) + len(closeTag)
			for l := 0; l <= len(body); l++ {
				cut := body[:l]
				v := NewValidator(bytes.NewReader(cut), ValidatorConfig{Root: f.root, Limits: NoLimits, Waits: DefaultWaits})
				// Some cuts are read in small pieces, so that the end meets
				// a scanner resumed mid-token.
				out, err := valRead(v, []int{64 << 10, 64 << 10, 64 << 10, 7}[l%4])
				okCut := l >= rootEnd && valTailOK(body[rootEnd:l])
				switch {
				case okCut && err != io.EOF:
					t.Fatalf("cut at %d of %d: %v, want io.EOF", l, len(body), err)
				case okCut && !bytes.Equal(out, cut):
					t.Fatalf("cut at %d: bytes changed", l)
				case !okCut && (!errors.Is(err, ErrMalformed) || failure.ClassOf(err) != failure.ClassRetryable):
					t.Fatalf("cut at %d of %d: err = %v, want a retryable ErrMalformed", l, len(body), err)
				}
			}
		})
	}
}

func TestValidatorCutShortMessage(t *testing.T) {
	body := readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml")
	cut := body[:bytes.Index(body, []byte("<ID>10112200"))]
	_, err := valCheck(t, cut, ValidatorConfig{Endpoint: "/hld/", Root: RootDetections}, 4096)
	var me *MalformedError
	if !errors.As(err, &me) || !me.CutShort || me.Offset != int64(len(cut)) || me.Endpoint != "/hld/" {
		t.Fatalf("err = %#v", err)
	}
	const want = "/HOST_LIST_VM_DETECTION_OUTPUT/RESPONSE/HOST_LIST/HOST"
	if !strings.HasSuffix(me.Reason, want) {
		t.Fatalf("reason %q does not name the open elements %s", me.Reason, want)
	}
}

func TestValidatorWellFormed(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"empty element", `<a/>`},
		{"declaration", `<?xml version="1.0" encoding="UTF-8" ?>` + "\n<a></a>"},
		{"BOM and declaration", "\xEF\xBB\xBF<?xml version='1.0'?><a/>"},
		{"attributes", `<a b='1' c = "2" d="'&quot;&#x41;&#65;>"/>`},
		{"newline in tags", "<a\n  b=\"1\"\n>x</a\n>"},
		{"entities", `<a>&lt;&gt;&amp;&apos;&quot;&#9;&#x10FFFF;&#0065;</a>`},
		{"CDATA with markup", `<a><![CDATA[<b>&apos;&lt;]] ]>]]]]><![CDATA[]]></a>`},
		{"brackets in text", `<a>]] > ]> ]]&gt; x]</a>`},
		{"comments and PIs around", "<!-- a //-->\n<?pi x?><a><!-- b --><?pi?></a>\n<!-- c --><?pi y ?>\n"},
		{"DOCTYPE across lines", "<!DOCTYPE a SYSTEM\n  \"https://x/y.dtd\">\n<a/>"},
		{"DOCTYPE with subset", `<!DOCTYPE a [<!ELEMENT a ANY><!-- > --><!ATTLIST a b CDATA "x>">]><a/>`},
		{"namespaces", `<p:a xmlns:p="u"><p:b p:c="1"/></p:a>`},
		{"CRLF", "<a>\r\n<b>\r\n</b>\r\n</a>\r\n"},
		{"invalid UTF-8 and control bytes pass", "<a>\xff\x01</a>"},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 4096} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				if _, err := valCheck(t, []byte(tt.doc), ValidatorConfig{}, n); err != io.EOF {
					t.Fatalf("%q: %v", tt.doc, err)
				}
			})
		}
	}
}

func TestValidatorMalformed(t *testing.T) {
	deep := strings.Repeat("<a>", xmlscan.MaxDepth+1) + strings.Repeat("</a>", xmlscan.MaxDepth+1)
	tests := []struct {
		name string
		doc  string
		kind xmlscan.Kind
	}{
		{"empty body", ``, xmlscan.KindNoRoot},
		{"whitespace and comments only", " <!-- x -->\n", xmlscan.KindNoRoot},
		{"mismatched tag", `<a><b></a></b>`, xmlscan.KindMismatch},
		{"end tag prefix", `<ab></a>`, xmlscan.KindMismatch},
		{"end tag longer", `<a></ab>`, xmlscan.KindMismatch},
		{"stray end tag", `<a/></a>`, xmlscan.KindMismatch},
		{"two roots", `<a/><b/>`, xmlscan.KindOutside},
		{"text after root", `<a/>x`, xmlscan.KindOutside},
		{"text before root", `x<a/>`, xmlscan.KindOutside},
		{"CDATA outside root", `<a/><![CDATA[x]]>`, xmlscan.KindOutside},
		{"DOCTYPE after root", `<a/><!DOCTYPE a>`, xmlscan.KindOutside},
		{"second DOCTYPE", `<!DOCTYPE a><!DOCTYPE a><a/>`, xmlscan.KindOutside},
		{"unclosed comment", `<a><!-- x</a>`, xmlscan.KindCutShort},
		{"unclosed comment after root", `<a/><!-- x`, xmlscan.KindCutShort},
		{"double dash in comment", `<a><!-- x -- y --></a>`, xmlscan.KindSyntax},
		{"comment ending --->", `<a><!-- x ---></a>`, xmlscan.KindSyntax},
		{"unclosed CDATA", `<a><![CDATA[x</a>`, xmlscan.KindCutShort},
		{"bad CDATA opener", `<a><![CDATX[x]]></a>`, xmlscan.KindSyntax},
		{"]]> in text", `<a>x]]>y</a>`, xmlscan.KindSyntax},
		{"< in attribute", `<a b="<"/>`, xmlscan.KindSyntax},
		{"unquoted attribute", `<a b=1/>`, xmlscan.KindSyntax},
		{"attribute without value", `<a b/>`, xmlscan.KindSyntax},
		{"no space between attributes", `<a b="1"c="2"/>`, xmlscan.KindStrict},
		{"garbage in end tag", `<a></a b>`, xmlscan.KindSyntax},
		{"space after <", `< a/>`, xmlscan.KindSyntax},
		{"slash space", `<a/ >`, xmlscan.KindSyntax},
		{"unknown entity", `<a>&nbsp;</a>`, xmlscan.KindEntity},
		{"entity without semicolon", `<a>&amp </a>`, xmlscan.KindEntity},
		{"entity in attribute", `<a b="&x;"/>`, xmlscan.KindEntity},
		{"NUL reference", `<a>&#0;</a>`, xmlscan.KindEntity},
		{"reference out of range", `<a>&#x110000;</a>`, xmlscan.KindEntity},
		{"FFFE reference", `<a>&#xFFFE;</a>`, xmlscan.KindEntity},
		{"surrogate reference", `<a>&#xD800;</a>`, xmlscan.KindStrict},
		{"uppercase X reference", `<a>&#X41;</a>`, xmlscan.KindEntity},
		{"empty reference", `<a>&#;</a>`, xmlscan.KindEntity},
		{"hex in decimal reference", `<a>&#1a;</a>`, xmlscan.KindEntity},
		{"long reference", `<a>&#` + strings.Repeat("0", 40) + `65;</a>`, xmlscan.KindLimit},
		{"depth bomb", deep, xmlscan.KindLimit},
		{"huge element name", `<` + strings.Repeat("n", xmlscan.MaxName+1) + `/>`, xmlscan.KindLimit},
		{"huge attribute name", `<a ` + strings.Repeat("n", xmlscan.MaxName+1) + `="1"/>`, xmlscan.KindLimit},
		{"two colons", `<a:b:c/>`, xmlscan.KindSyntax},
		{"non-ASCII name", "<\xc3\xa9/>", xmlscan.KindStrict},
		{"declaration not first", ` <?xml version="1.0"?><a/>`, xmlscan.KindStrict},
		{"declaration inside", `<a><?xml version="1.0"?></a>`, xmlscan.KindStrict},
		{"reserved PI target", `<?XmL x?><a/>`, xmlscan.KindStrict},
		{"unclosed PI", `<a/><?pi x`, xmlscan.KindCutShort},
		{"unknown declaration", `<!ELEMENT a ANY><a/>`, xmlscan.KindStrict},
		{"unclosed DOCTYPE", `<!DOCTYPE a "x>"`, xmlscan.KindCutShort},
		{"cut in start tag", `<a b="1`, xmlscan.KindCutShort},
		{"cut in entity", `<a>&am`, xmlscan.KindCutShort},
		{"bad BOM", "\xEF\xBB<a/>", xmlscan.KindOutside},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 3, 4096} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				_, err := valCheck(t, []byte(tt.doc), ValidatorConfig{Endpoint: "/x/"}, n)
				if !errors.Is(err, ErrMalformed) || failure.ClassOf(err) != failure.ClassRetryable {
					t.Fatalf("%q: err = %v, want a retryable ErrMalformed", tt.doc, err)
				}
				if got := valKind(err); got != tt.kind {
					t.Fatalf("%q: kind %d, want %d (%v)", tt.doc, got, tt.kind, err)
				}
			})
		}
	}
}

func TestValidatorIDs(t *testing.T) {
	const (
		open  = `<HOST_LIST_OUTPUT><RESPONSE><DATETIME>x</DATETIME><ID_SET>`
		close = `</ID_SET></RESPONSE></HOST_LIST_OUTPUT>`
	)
	tests := []struct {
		name string
		body string
		ids  []uint64
		kind xmlscan.Kind
	}{
		{"one", `<ID>5</ID>`, []uint64{5}, 0},
		{"whitespace around", "<ID>\n\t 5 \r\n</ID><ID_RANGE> 7-9\n</ID_RANGE>", []uint64{5, 7, 8, 9}, 0},
		{"range", `<ID_RANGE>10-14</ID_RANGE><ID>20</ID><ID_RANGE>30 - 30</ID_RANGE>`, []uint64{10, 11, 12, 13, 14, 20, 30}, 0},
		{"range at the top", `<ID_RANGE>18446744073709551614-18446744073709551615</ID_RANGE>`, []uint64{1<<64 - 2, 1<<64 - 1}, 0},
		{"CDATA and references", `<ID><![CDATA[42]]></ID><ID>4&#51;</ID>`, []uint64{42, 43}, 0},
		{"elsewhere ignored", `<X><ID>abc</ID></X>`, nil, 0},
		{"not a number", `<ID>abc</ID>`, nil, xmlscan.KindContent},
		{"signed", `<ID>+5</ID>`, nil, xmlscan.KindContent},
		{"zero", `<ID>0</ID>`, nil, xmlscan.KindContent},
		{"empty", `<ID/>`, nil, xmlscan.KindContent},
		{"inner space", `<ID>1 2</ID>`, nil, xmlscan.KindContent},
		{"overflow", `<ID>18446744073709551616</ID>`, nil, xmlscan.KindContent},
		{"too long", `<ID>` + strings.Repeat(" ", valMaxIDText) + `1</ID>`, nil, xmlscan.KindLimit},
		{"range backwards", `<ID_RANGE>9-7</ID_RANGE>`, nil, xmlscan.KindContent},
		{"range half", `<ID_RANGE>9-</ID_RANGE>`, nil, xmlscan.KindContent},
		{"range without dash", `<ID_RANGE>9</ID_RANGE>`, nil, xmlscan.KindContent},
		{"range too wide", fmt.Sprintf(`<ID_RANGE>1-%d</ID_RANGE>`, valMaxRange+1), nil, xmlscan.KindLimit},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 4096} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				var ids []uint64
				sum, err := valCheck(t, []byte(open+tt.body+close), ValidatorConfig{
					Root: RootHostList, OnID: func(id uint64) { ids = append(ids, id) },
				}, n)
				if tt.kind != 0 {
					if !errors.Is(err, ErrMalformed) || valKind(err) != tt.kind {
						t.Fatalf("err = %v, want kind %d", err, tt.kind)
					}
					return
				}
				if err != io.EOF {
					t.Fatal(err)
				}
				if !slices.Equal(ids, tt.ids) || sum.Hosts != len(tt.ids) {
					t.Fatalf("ids %v, Hosts %d; want %v", ids, sum.Hosts, tt.ids)
				}
				if len(ids) > 0 && (sum.FirstID != ids[0] || sum.LastID != ids[len(ids)-1]) {
					t.Fatalf("FirstID %d, LastID %d", sum.FirstID, sum.LastID)
				}
			})
		}
	}
}

// ID_RANGE expansion costs no allocation per ID.
func TestValidatorRangeAllocs(t *testing.T) {
	body := []byte(`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>1-200000</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`)
	buf := make([]byte, 4096)
	var n int
	allocs := testing.AllocsPerRun(3, func() {
		n = 0
		v := NewValidator(bytes.NewReader(body), ValidatorConfig{OnID: func(uint64) { n++ }})
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{v}, buf); err != nil {
			t.Fatal(err)
		}
	})
	if n != 200000 || allocs > 20 {
		t.Fatalf("%d IDs with %.0f allocations", n, allocs)
	}
}

// Memory does not grow with the body: a document ten times larger costs
// the same allocations.
func TestValidatorAllocsIndependentOfSize(t *testing.T) {
	small := valGenHLD(valGenConfig{Hosts: 5, Detections: 10, Seed: 2}).Body
	large := valGenHLD(valGenConfig{Hosts: 50, Detections: 10, Seed: 2}).Body
	buf := make([]byte, 32<<10)
	count := func(body []byte) float64 {
		// Many runs: AllocsPerRun floors the average, so a stray runtime
		// allocation (the race detector makes some) does not count.
		return testing.AllocsPerRun(50, func() {
			v := NewValidator(bytes.NewReader(body), ValidatorConfig{Root: RootDetections})
			if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{v}, buf); err != nil {
				t.Fatal(err)
			}
		})
	}
	if s, l := count(small), count(large); l > s || s > 20 {
		t.Fatalf("allocations: %.0f for %d bytes, %.0f for %d bytes", s, len(small), l, len(large))
	}
}

func TestValidatorWrongRoot(t *testing.T) {
	body := readSample(t, "hostlist_details-none_idset_recorded_200.xml")
	// Decided at the root: the rest of the body is never read.
	end := bytes.Index(body, []byte("<RESPONSE>"))
	r := io.MultiReader(bytes.NewReader(body[:end]), iotest.ErrReader(errors.New("read past the root")))
	v := NewValidator(r, ValidatorConfig{Root: RootDetections})
	_, err := valRead(v, 4096)
	if !errors.Is(err, ErrUnexpectedRoot) || failure.ClassOf(err) != failure.ClassRetryable {
		t.Fatalf("err = %v", err)
	}
	if v.Summary().Root != RootHostList {
		t.Fatalf("Root = %q", v.Summary().Root)
	}
}

// A fault in the middle is reported without reading the rest.
func TestValidatorFailsEarly(t *testing.T) {
	r := io.MultiReader(strings.NewReader(`<a><b></a>`), iotest.ErrReader(errors.New("read past the fault")))
	_, err := valRead(NewValidator(r, ValidatorConfig{}), 4096)
	if !errors.Is(err, ErrMalformed) || valKind(err) != xmlscan.KindMismatch {
		t.Fatalf("err = %v", err)
	}
}

func TestValidatorReaderErrorPassesThrough(t *testing.T) {
	body := readSample(t, "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml")
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(body[:1000]), iotest.ErrReader(boom))
	v := NewValidator(r, ValidatorConfig{Root: RootDetections})
	out, err := valRead(v, 300)
	if err != boom || !bytes.Equal(out, body[:1000]) {
		t.Fatalf("err = %v after %d bytes; want the reader's error after 1000", err, len(out))
	}
}

func TestValidatorErrorBodies(t *testing.T) {
	page := "<!doctype html>\n<html><head><title>503 Service Unavailable</title></head>\n<body><h1>Service Unavailable</h1><br><p>Back soon</body></html>\n"
	big := "<html><head><title>Maintenance</title></head><body>" + strings.Repeat("<p>filler</p>\n", 10000)
	tests := []struct {
		name   string
		r      io.Reader
		status int
		root   string
		class  failure.Class
		text   string
	}{
		{"HTML page, not XML", strings.NewReader(page), 200, "html", failure.ClassRetryable, "503 Service Unavailable"},
		{"HTML page with status", strings.NewReader(page), 503, "html", failure.ClassRetryable, "503 Service Unavailable"},
		{"uppercase HTML", strings.NewReader("<HTML><BODY><H1>Forbidden</H1></BODY></HTML>"), 200, "html", failure.ClassRetryable, "Forbidden"},
		{"large page judged on its head", io.MultiReader(strings.NewReader(big), iotest.ErrReader(errors.New("read past the head"))),
			200, "html", failure.ClassRetryable, "Maintenance"},
		{"GENERIC_RETURN cut short", strings.NewReader(`<GENERIC_RETURN><RETURN status="FAILED" number="2000">Bad Login/Password</RET`),
			200, "GENERIC_RETURN", failure.ClassFleetWide, "Bad Login/Password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewValidator(tt.r, ValidatorConfig{Endpoint: "/e/", Status: tt.status, Root: RootDetections, Limits: NoLimits, Waits: DefaultWaits})
			_, err := valRead(v, 1000)
			var api APIError
			if !errors.As(err, &api) || api.Root != tt.root || api.Status != tt.status || api.Text != tt.text {
				t.Fatalf("err = %#v", err)
			}
			if got := failure.ClassOf(err); got != tt.class {
				t.Fatalf("class %v, want %v", got, tt.class)
			}
		})
	}
}

func TestValidatorNotXML(t *testing.T) {
	for _, body := range []string{"Service Unavailable\n", "{\"error\":1}", "<!doctype x><y"} {
		_, err := valCheck(t, []byte(body), ValidatorConfig{}, 64)
		if !errors.Is(err, ErrMalformed) || failure.ClassOf(err) != failure.ClassRetryable {
			t.Fatalf("%q: err = %v", body, err)
		}
	}
}

// valGenConfig shapes a generated HLD document.
type valGenConfig struct {
	Hosts, Detections int // detections per host
	Seed              uint64
	Warning           bool
}

// valGenerated is a generated document and what a validator must find in it.
type valGenerated struct {
	Body              []byte
	Hosts, Detections int
	FirstID, LastID   uint64
	WarningURL        string
}

// valGenHLD writes a Host List Detection response shaped like Qualys'
// (qualys-api.md §3.2, §3.4 item 5): multi-line DOCTYPE, comments around
// the root, CDATA with tabs, newlines and literal entities, whitespace
// around CDATA, newlines inside tags, QDS attributes, references in text.
func valGenHLD(c valGenConfig) valGenerated {
	rng := rand.New(rand.NewPCG(c.Seed, 42))
	var b bytes.Buffer
	g := valGenerated{Hosts: c.Hosts, Detections: c.Hosts * c.Detections}
	b.WriteString(`<?xml version="1.0" encoding="UTF-8" ?>` + "\n")
	b.WriteString("<!DOCTYPE HOST_LIST_VM_DETECTION_OUTPUT SYSTEM\n  \"https://qualysapi.qg2.apps.qualys.com/api/2.0/fo/asset/host/vm/detection/dtd/output.dtd\">\n")
	b.WriteString("<!-- This report was generated with an evaluation version of Qualys //-->\n")
	b.WriteString("<HOST_LIST_VM_DETECTION_OUTPUT>\n  <RESPONSE>\n    <DATETIME>2024-03-08T20:15:41Z</DATETIME>\n    <HOST_LIST>\n")
	words := []string{"linux-image", "4.15.0-1126", "aws", "&quot;quoted&quot;", "&lt;tag&gt;", "doesn&apos;t", "HTTP/1.1", "200", "OK", "Content-Type:", "text/html", "cipher", "RC4-SHA", "(128)", "[x]", "-->"}
	id := uint64(100000 + rng.IntN(1000))
	for h := 0; h < c.Hosts; h++ {
		id += uint64(1 + rng.IntN(50))
		if h == 0 {
			g.FirstID = id
		}
		g.LastID = id
		fmt.Fprintf(&b, "      <HOST>\n        <ID>%d</ID>\n        <ASSET_ID>%d</ASSET_ID>\n        <IP>10.%d.%d.%d</IP>\n", id, id*3, rng.IntN(256), rng.IntN(256), rng.IntN(256))
		b.WriteString("        <TRACKING_METHOD>IP</TRACKING_METHOD>\n")
		fmt.Fprintf(&b, "        <OS>\n          <![CDATA[Windows 2016/2019/10]]>\n        </OS>\n        <DNS><![CDATA[host-%d.example.local]]></DNS>\n", id)
		fmt.Fprintf(&b, "        <DNS_DATA>\n          <HOSTNAME><![CDATA[host-%d]]></HOSTNAME>\n          <DOMAIN><![CDATA[example.local]]></DOMAIN>\n          <FQDN><![CDATA[host-%d.example.local]]></FQDN>\n        </DNS_DATA>\n", id, id)
		b.WriteString("        <LAST_SCAN_DATETIME>2024-03-08T06:25:17Z</LAST_SCAN_DATETIME>\n        <LAST_VM_SCANNED_DATE>2024-03-08T06:23:47Z</LAST_VM_SCANNED_DATE>\n        <LAST_VM_SCANNED_DURATION>1113</LAST_VM_SCANNED_DURATION>\n")
		b.WriteString("        <DETECTION_LIST>\n")
		for d := 0; d < c.Detections; d++ {
			fmt.Fprintf(&b, "          <DETECTION>\n            <UNIQUE_VULN_ID>%d</UNIQUE_VULN_ID>\n            <QID>%d</QID>\n            <TYPE>Confirmed</TYPE>\n            <SEVERITY>%d</SEVERITY>\n",
				rng.Uint32(), 10000+rng.IntN(300000), 1+rng.IntN(5))
			fmt.Fprintf(&b, "            <PORT>%d</PORT>\n            <PROTOCOL>tcp</PROTOCOL>\n            <SSL>%d</SSL>\n            <RESULTS\n            ><![CDATA[", 1+rng.IntN(65535), rng.IntN(2))
			// RESULTS: mostly short, some a few KB, a few large.
			var size int
			switch p := rng.IntN(10); {
			case p < 5:
				size = 50 + rng.IntN(250)
			case p < 9:
				size = 500 + rng.IntN(1500)
			default:
				size = 4000 + rng.IntN(4000)
			}
			for n := 0; n < size; {
				w := words[rng.IntN(len(words))]
				b.WriteString(w)
				n += len(w) + 1
				switch rng.IntN(6) {
				case 0:
					b.WriteByte('\n')
				case 1:
					b.WriteByte('\t')
				default:
					b.WriteByte(' ')
				}
			}
			b.WriteString("]]></RESULTS>\n            <STATUS>Active</STATUS>\n            <FIRST_FOUND_DATETIME\n            >2021-02-05T04:50:45Z</FIRST_FOUND_DATETIME>\n            <LAST_FOUND_DATETIME>2024-03-08T20:15:41Z</LAST_FOUND_DATETIME>\n")
			fmt.Fprintf(&b, "            <QDS severity=\"%s\">%d</QDS>\n", []string{"LOW", "MEDIUM", "HIGH", "CRITICAL"}[rng.IntN(4)], rng.IntN(100))
			fmt.Fprintf(&b, "            <QDS_FACTORS>\n              <QDS_FACTOR name=\"CVSS\"><![CDATA[%d.%d]]></QDS_FACTOR>\n              <QDS_FACTOR name=\"epss\"><![CDATA[0.00%d]]></QDS_FACTOR>\n            </QDS_FACTORS>\n", rng.IntN(10), rng.IntN(10), rng.IntN(1000))
			b.WriteString("            <TIMES_FOUND>5393</TIMES_FOUND>\n            <LAST_TEST_DATETIME>2024-03-08T20:15:41Z</LAST_TEST_DATETIME>\n            <LAST_UPDATE_DATETIME>2024-03-08T20:15:41Z</LAST_UPDATE_DATETIME>\n")
			b.WriteString("            <IS_IGNORED>0</IS_IGNORED>\n            <IS_DISABLED>0</IS_DISABLED>\n            <AFFECT_RUNNING_KERNEL>0</AFFECT_RUNNING_KERNEL>\n")
			b.WriteString("            <SERVICE>a &amp; b &lt;c&gt; &#x41;&#66;</SERVICE>\n            <LAST_PROCESSED_DATETIME>2024-03-08T20:15:41Z</LAST_PROCESSED_DATETIME>\n          </DETECTION>\n")
		}
		b.WriteString("        </DETECTION_LIST>\n      </HOST>\n")
	}
	b.WriteString("    </HOST_LIST>\n")
	if c.Warning {
		g.WarningURL = fmt.Sprintf("https://qualysapi.qualys.com/api/2.0/fo/asset/host/vm/detection/?action=list&truncation_limit=%d&id_min=%d", c.Hosts, g.LastID+1)
		fmt.Fprintf(&b, "    <WARNING>\n      <CODE>1980</CODE>\n      <TEXT>%d record limit exceeded. Use URL to get next batch of results.</TEXT>\n      <URL>\n        <![CDATA[%s]]>\n      </URL>\n    </WARNING>\n", c.Hosts, g.WarningURL)
	}
	b.WriteString("  </RESPONSE>\n</HOST_LIST_VM_DETECTION_OUTPUT>\n")
	b.WriteString("<!-- CONFIDENTIAL AND PROPRIETARY INFORMATION. Qualys provides the QualysGuard Service \"As Is,\" without any warranty of any kind. //-->\n")
	g.Body = b.Bytes()
	return g
}

// TestErrorDocumentInsideRootIsRejected: design.md I2 says an object
// under detections/ exists only if the response is well-formed "with no
// error document inside". A SIMPLE_RETURN (or GENERIC_RETURN) appended inside
// the root after a partial HOST_LIST is accepted as a whole answer, and the
// batch would be recorded done with the hosts after the failure missing.
func TestErrorDocumentInsideRootIsRejected(t *testing.T) {
	for name, body := range map[string]string{
		"simple": `<?xml version="1.0" encoding="UTF-8" ?><HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><DATETIME>2026-01-01T00:00:00Z</DATETIME>` +
			`<HOST_LIST><HOST><ID>1</ID></HOST></HOST_LIST></RESPONSE>` +
			`<SIMPLE_RETURN><RESPONSE><CODE>999</CODE><TEXT>Internal error</TEXT></RESPONSE></SIMPLE_RETURN></HOST_LIST_VM_DETECTION_OUTPUT>`,
		"generic": `<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><HOST_LIST><HOST><ID>1</ID></HOST></HOST_LIST>` +
			`<GENERIC_RETURN><RETURN status="FAILED" number="999">Internal error</RETURN></GENERIC_RETURN></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`,
	} {
		v := NewValidator(bytes.NewReader([]byte(body)), ValidatorConfig{Root: RootDetections, Status: 200})
		if _, err := io.Copy(io.Discard, v); err == nil {
			t.Errorf("%s: body with an error document inside the root accepted as whole (hosts %d)", name, v.Summary().Hosts)
		}
	}
}
