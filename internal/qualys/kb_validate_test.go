package qualys

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys/xmlscan"
)

// kb42QIDs are the QIDs of the 2022 recording, in the order it holds them
// (ascending: Qualys sorts by QID whatever the request's order).
var kb42QIDs = []uint64{6, 45017, 45038, 150001, 150009, 150010, 150018, 150020, 150021, 150053, 150054,
	150067, 150076, 150084, 150112, 150115, 150124, 150126, 150142, 150150, 150151, 150152, 150158, 150162,
	150176, 150202, 150204, 150206, 150208, 150210, 150245, 150246, 150247, 150261, 150262, 150263, 150272,
	150375, 150400, 150456, 150461, 150462}

// TestValidatorKBSamples: every real KnowledgeBase answer is accepted
// whole, byte for byte, in any read size, with exactly its QIDs.
func TestValidatorKBSamples(t *testing.T) {
	tests := []struct {
		file string
		qids []uint64
	}{
		{"kb_1vuln_details-default_keepalive-comment-in-response_recorded_200.xml", []uint64{316760}},
		{"kb_2vulns_empty-cdata_correlation_threat-intel_demisto-fixture.xml", []uint64{10052, 10186}},
		{"kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml", kb42QIDs},
		{"kb_unknown-id_empty-response_keepalive-after-root_recorded_200.xml", nil},
	}
	for _, tt := range tests {
		body := readSample(t, tt.file)
		for _, list := range []kbList{kbAnyList, kbVulnList} {
			for _, n := range []int{1, 7, 64 << 10} {
				t.Run(fmt.Sprintf("%s/list=%d/read=%d", tt.file, list, n), func(t *testing.T) {
					var qids []uint64
					sum, err := valCheck(t, body, ValidatorConfig{
						Endpoint: "/api/2.0/fo/knowledge_base/vuln/", Status: 200, Root: RootKB, list: list,
						OnID:   func(id uint64) { qids = append(qids, id) },
						Limits: NoLimits, Waits: DefaultWaits,
					}, n)
					if err != io.EOF {
						t.Fatalf("err = %v, want io.EOF", err)
					}
					if !slices.Equal(qids, tt.qids) || sum.Hosts != len(tt.qids) || sum.Root != RootKB || sum.Bytes != int64(len(body)) {
						t.Fatalf("QIDs %v, summary %+v; want %v", qids, sum, tt.qids)
					}
					if len(qids) > 0 && (sum.FirstID != qids[0] || sum.LastID != qids[len(qids)-1]) {
						t.Fatalf("FirstID %d, LastID %d", sum.FirstID, sum.LastID)
					}
					if sum.Detections != 0 || sum.Warning != nil {
						t.Fatalf("summary %+v", sum)
					}
				})
			}
		}
	}
}

// TestValidatorKBErrorSamples: an error document on a KnowledgeBase call
// is classified exactly as on a detection call, the 1905 KB recording
// (no XML declaration) included.
func TestValidatorKBErrorSamples(t *testing.T) {
	tests := []struct {
		file   string
		status int
		class  failure.Class
		code   int
	}{
		{"error_simple-return_1905_kb-bad-ids_recorded_400.xml", 400, failure.ClassPermanent, 1905},
		{"error_simple-return_1905_kb-bad-ids_recorded_400.xml", 200, failure.ClassPermanent, 1905},
		{"error_simple-return_1905_bad-ids_recorded_400.xml", 400, failure.ClassPermanent, 1905},
		{"error_simple-return_1960_concurrency-limit_mock_409.xml", 409, failure.ClassBackPressure, 1960},
		{"error_simple-return_1965_rate-limit_mock_409.xml", 409, failure.ClassBackPressure, 1965},
		{"error_simple-return_2001_account-expired_recorded_200.xml", 200, failure.ClassFleetWide, 2001},
		{"error_generic-return_999_internal-error_vendor-doc-example_NOT-well-formed.xml", 200, failure.ClassRetryable, 999},
	}
	for _, tt := range tests {
		body := readSample(t, tt.file)
		t.Run(fmt.Sprintf("%s/%d", tt.file, tt.status), func(t *testing.T) {
			verdict := func(root string, list kbList) error {
				_, err := valCheck(t, body, ValidatorConfig{Endpoint: "/e/", Status: tt.status, Root: root, list: list,
					Limits: NoLimits, Waits: DefaultWaits}, 64)
				return err
			}
			kb, hld := verdict(RootKB, kbVulnList), verdict(RootDetections, kbAnyList)
			var api APIError
			if !errors.As(kb, &api) || api.Code != tt.code || api.Status != tt.status {
				t.Fatalf("err = %v, want an APIError %d", kb, tt.code)
			}
			if failure.ClassOf(kb) != tt.class || failure.ClassOf(hld) != tt.class || failure.WaitOf(kb) != failure.WaitOf(hld) {
				t.Fatalf("KB: %v (%v), detections: %v (%v); want %v both", kb, failure.ClassOf(kb), hld, failure.ClassOf(hld), tt.class)
			}
			if kb.Error() != hld.Error() {
				t.Fatalf("KB verdict %q, detection verdict %q", kb, hld)
			}
			if k := verdict(RootKB, kbIDSetList); k.Error() != kb.Error() {
				t.Fatalf("listing verdict %q, batch verdict %q", k, kb)
			}
		})
	}
}

// TestValidatorKBRootsApart: a KnowledgeBase answer to a detection or Host
// List call, or theirs to a KnowledgeBase call, is refused at the root.
func TestValidatorKBRootsApart(t *testing.T) {
	tests := []struct{ file, root string }{
		{"kb_1vuln_details-default_keepalive-comment-in-response_recorded_200.xml", RootDetections},
		{"kb_unknown-id_empty-response_keepalive-after-root_recorded_200.xml", RootHostList},
		{"hld_1host_3det_multiline-cdata_jupiterone-fixture.xml", RootKB},
		{"hld_no-matching-hosts_empty-response_recorded_200.xml", RootKB},
		{"hostlist_details-none_idset_recorded_200.xml", RootKB},
	}
	for _, tt := range tests {
		t.Run(tt.file+"/"+tt.root, func(t *testing.T) {
			var ids []uint64
			_, err := valCheck(t, readSample(t, tt.file), ValidatorConfig{Root: tt.root, OnID: func(id uint64) { ids = append(ids, id) }}, 4096)
			if !errors.Is(err, ErrUnexpectedRoot) || failure.ClassOf(err) != failure.ClassRetryable || len(ids) != 0 {
				t.Fatalf("err = %v, IDs %v; want a retryable ErrUnexpectedRoot and no ID", err, ids)
			}
		})
	}
}

// TestValidatorKBTruncatedEverywhere: a KnowledgeBase answer cut anywhere
// before its root closes (or inside a trailing comment, the keep-alive
// one included) is a retryable ErrMalformed, never a whole answer.
func TestValidatorKBTruncatedEverywhere(t *testing.T) {
	files := []struct {
		file string
		step int
	}{
		{"kb_1vuln_details-default_keepalive-comment-in-response_recorded_200.xml", 1},
		{"kb_unknown-id_empty-response_keepalive-after-root_recorded_200.xml", 1},
		{"kb_2vulns_empty-cdata_correlation_threat-intel_demisto-fixture.xml", 3},
		// 82 KB: every 401st byte keeps the test short (the small ones
		// meet every kind of token at every byte).
		{"kb_42vulns_details-default_ig-potential-vuln_gzip_recorded_200.xml", 401},
	}
	for _, f := range files {
		t.Run(f.file, func(t *testing.T) {
			body := readSample(t, f.file)
			closeTag := []byte("</" + RootKB + ">")
			rootEnd := bytes.LastIndex(body, closeTag) + len(closeTag)
			for l := 0; l <= len(body); l += f.step {
				if f.step > 1 && l+f.step > len(body) {
					l = len(body) // and the whole body last
				}
				cut := body[:l]
				v := NewValidator(bytes.NewReader(cut), ValidatorConfig{Root: RootKB, list: kbVulnList, Limits: NoLimits, Waits: DefaultWaits})
				out, err := valRead(v, []int{64 << 10, 64 << 10, 64 << 10, 7}[l%4])
				okCut := l >= rootEnd && valTailOK(body[rootEnd:l])
				switch {
				case okCut && (err != io.EOF || !bytes.Equal(out, cut)):
					t.Fatalf("cut at %d of %d: %v, want io.EOF and the bytes", l, len(body), err)
				case !okCut && (!errors.Is(err, ErrMalformed) || failure.ClassOf(err) != failure.ClassRetryable):
					t.Fatalf("cut at %d of %d: err = %v, want a retryable ErrMalformed", l, len(body), err)
				}
			}
		})
	}
}

// TestValidatorKBContent covers the KnowledgeBase rules on made-up
// answers: one QID per VULN, the list the request asked for, QIDs read
// only where a VULN names itself, and what the samples showed (comments
// anywhere, empty CDATA, HTML in CDATA).
func TestValidatorKBContent(t *testing.T) {
	const (
		open  = "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<!DOCTYPE KNOWLEDGE_BASE_VULN_LIST_OUTPUT SYSTEM \"https://x/kb.dtd\">\n<KNOWLEDGE_BASE_VULN_LIST_OUTPUT><RESPONSE><DATETIME>2026-12-04T00:00:00Z</DATETIME>\n"
		close = "</RESPONSE></KNOWLEDGE_BASE_VULN_LIST_OUTPUT>\n"
		vuln  = "<VULN><QID>%d</QID><VULN_TYPE>Vulnerability</VULN_TYPE><TITLE><![CDATA[<P>x &quot;y&quot;</P>]]></TITLE></VULN>"
	)
	v := func(ids ...uint64) string {
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, vuln, id)
		}
		return b.String()
	}
	tests := []struct {
		name string
		list kbList
		body string // between open and close; a leading "!" replaces them
		qids []uint64
		kind xmlscan.Kind
		msg  string
	}{
		{"vulns", kbVulnList, "<VULN_LIST>" + v(3, 1, 2) + "</VULN_LIST>", []uint64{3, 1, 2}, 0, ""},
		{"empty VULN_LIST", kbVulnList, "<VULN_LIST/>", nil, 0, ""},
		{"nothing matched", kbVulnList, "", nil, 0, ""},
		{"keep-alive comments everywhere", kbVulnList,
			"<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n<VULN_LIST><!-- keep-alive -->" +
				"<VULN><!-- k --><QID><!-- k -->7<!-- k --></QID><!-- k --></VULN></VULN_LIST>\n<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n",
			[]uint64{7}, 0, ""},
		{"keep-alive after the root", kbVulnList,
			"!" + strings.TrimSuffix(open, "\n") + "<VULN_LIST>" + v(9) + "</VULN_LIST>" + close +
				"<!-- CONFIDENTIAL //-->\n<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->\n<!-- keep-alive for KNOWLEDGE_BASE_VULN_LIST_OUTPUT  -->",
			[]uint64{9}, 0, ""},
		{"empty CDATA and HTML in CDATA", kbVulnList,
			"<VULN_LIST><VULN><QID>5</QID><TITLE><![CDATA[]]></TITLE><DIAGNOSIS><![CDATA[<UL><LI>a &lt;b&gt;</LI></UL><BR><A HREF=\"x?a=1&b=2\">l</A>]]></DIAGNOSIS><SOLUTION><![CDATA[]]></SOLUTION></VULN></VULN_LIST>",
			[]uint64{5}, 0, ""},
		{"QID in CDATA, spaced", kbVulnList, "<VULN_LIST><VULN><QID>\n <![CDATA[42]]> </QID></VULN></VULN_LIST>", []uint64{42}, 0, ""},
		{"QIDs elsewhere are not VULNs", kbVulnList,
			"<VULN_LIST><VULN><QID>5</QID><CHANGE_LOG_LIST><QID>x</QID></CHANGE_LOG_LIST><CORRELATION><QID>6</QID></CORRELATION></VULN></VULN_LIST><QID>7</QID>",
			[]uint64{5}, 0, ""},
		{"a detection answer's lists are not read here", kbAnyList,
			"<HOST_LIST><HOST><ID>5</ID></HOST></HOST_LIST>", nil, 0, ""},
		{"warning", kbVulnList,
			"<VULN_LIST>" + v(4) + "</VULN_LIST><WARNING><CODE>1980</CODE><TEXT>more</TEXT><URL><![CDATA[https://x/api/2.0/fo/knowledge_base/vuln/?action=list&id_min=5]]></URL></WARNING>",
			[]uint64{4}, 0, ""},
		{"listing", kbIDSetList, "<ID_SET><ID>6</ID><ID_RANGE>10-12</ID_RANGE></ID_SET>", []uint64{6, 10, 11, 12}, 0, ""},
		{"listing, either list", kbAnyList, "<ID_SET><ID>6</ID></ID_SET>", []uint64{6}, 0, ""},
		{"vulns, either list", kbAnyList, "<VULN_LIST>" + v(8) + "</VULN_LIST>", []uint64{8}, 0, ""},

		{"VULN without QID", kbVulnList, "<VULN_LIST><VULN><TITLE>x</TITLE></VULN></VULN_LIST>", nil, xmlscan.KindContent, "VULN without a QID"},
		{"empty VULN", kbVulnList, "<VULN_LIST><VULN/></VULN_LIST>", nil, xmlscan.KindContent, "VULN without a QID"},
		{"two QIDs", kbVulnList, "<VULN_LIST><VULN><QID>1</QID><QID>2</QID></VULN></VULN_LIST>", nil, xmlscan.KindContent, "second QID"},
		{"QID not a number", kbVulnList, "<VULN_LIST><VULN><QID>abc</QID></VULN></VULN_LIST>", nil, xmlscan.KindContent, `QID "abc" is not a positive integer`},
		{"QID zero", kbVulnList, "<VULN_LIST><VULN><QID>0</QID></VULN></VULN_LIST>", nil, xmlscan.KindContent, "QID"},
		{"empty QID", kbVulnList, "<VULN_LIST><VULN><QID><![CDATA[]]></QID></VULN></VULN_LIST>", nil, xmlscan.KindContent, "QID"},
		{"listing ID not a number", kbIDSetList, "<ID_SET><ID>x</ID></ID_SET>", nil, xmlscan.KindContent, `QID "x"`},
		{"listing range backwards", kbIDSetList, "<ID_SET><ID_RANGE>9-7</ID_RANGE></ID_SET>", nil, xmlscan.KindContent, "runs backwards"},
		{"listing range not a range", kbIDSetList, "<ID_SET><ID_RANGE>9</ID_RANGE></ID_SET>", nil, xmlscan.KindContent, "range of QIDs"},
		{"ID_SET to a batch", kbVulnList, "<ID_SET><ID>6</ID></ID_SET>", nil, xmlscan.KindContent, "ID_SET in the answer"},
		{"VULN_LIST to a listing", kbIDSetList, "<VULN_LIST>" + v(8) + "</VULN_LIST>", nil, xmlscan.KindContent, "VULN_LIST in the answer"},
		{"error document inside", kbVulnList,
			"<VULN_LIST>" + v(1) + "</VULN_LIST><SIMPLE_RETURN><RESPONSE><CODE>999</CODE><TEXT>x</TEXT></RESPONSE></SIMPLE_RETURN>",
			nil, xmlscan.KindSyntax, "error document SIMPLE_RETURN inside"},
		{"comment not closed after the root", kbVulnList, "!" + open + close + "<!-- keep-alive for KNOWLEDGE_BASE", nil, xmlscan.KindCutShort, ""},
		{"cut inside a VULN", kbVulnList, "!" + open + "<VULN_LIST><VULN><QID>5</QID><TITLE><![CDATA[x", nil, xmlscan.KindCutShort, ""},
	}
	for _, tt := range tests {
		doc := open + tt.body + close
		if strings.HasPrefix(tt.body, "!") {
			doc = tt.body[1:]
		}
		for _, n := range []int{1, 5, 4096} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, n), func(t *testing.T) {
				var qids []uint64
				sum, err := valCheck(t, []byte(doc), ValidatorConfig{Root: RootKB, list: tt.list,
					OnID: func(id uint64) { qids = append(qids, id) }}, n)
				if tt.kind != 0 {
					if !errors.Is(err, ErrMalformed) || valKind(err) != tt.kind || failure.ClassOf(err) != failure.ClassRetryable {
						t.Fatalf("err = %v, want a retryable ErrMalformed of kind %d", err, tt.kind)
					}
					if !strings.Contains(err.Error(), tt.msg) {
						t.Fatalf("err = %v, want it to say %q", err, tt.msg)
					}
					return
				}
				if err != io.EOF {
					t.Fatalf("err = %v", err)
				}
				if !slices.Equal(qids, tt.qids) || sum.Hosts != len(tt.qids) {
					t.Fatalf("QIDs %v (Hosts %d), want %v", qids, sum.Hosts, tt.qids)
				}
			})
		}
	}
}

// TestValidatorKBListsOnlyUnderItsRoot: a detection answer's VULN_LIST (no
// such thing) is not read, and its host IDs are still host IDs.
func TestValidatorKBListsOnlyUnderItsRoot(t *testing.T) {
	doc := `<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><VULN_LIST><VULN><QID>5</QID></VULN><VULN/></VULN_LIST>` +
		`<HOST_LIST><HOST><ID>9</ID></HOST></HOST_LIST></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`
	var ids []uint64
	_, err := valCheck(t, []byte(doc), ValidatorConfig{Root: RootDetections, OnID: func(id uint64) { ids = append(ids, id) }}, 3)
	if err != io.EOF || !slices.Equal(ids, []uint64{9}) {
		t.Fatalf("err = %v, IDs %v; want io.EOF and [9]", err, ids)
	}
}

// TestKBDTDPaths: the paths the validator reads QIDs from are the ones
// Qualys' KnowledgeBase DTD declares (the 2023 copy among the samples).
func TestKBDTDPaths(t *testing.T) {
	dtd := string(readSample(t, "kb_dtd_knowledge_base_vuln_list_output_qualyspy-2023.dtd"))
	for _, decl := range []string{
		"<!ELEMENT KNOWLEDGE_BASE_VULN_LIST_OUTPUT (REQUEST?,RESPONSE)>",
		"<!ELEMENT RESPONSE (DATETIME, (VULN_LIST|ID_SET)?, WARNING?)>",
		"<!ELEMENT VULN_LIST (VULN*)>",
		"<!ELEMENT VULN (QID, ",
		"<!ELEMENT QID (#PCDATA)>",
	} {
		if !strings.Contains(dtd, decl) {
			t.Errorf("the DTD does not declare %s", decl)
		}
	}
}

// TestValidatorHostList2022Sample: the 2022 Host List recording, with its
// moved DOCTYPE, is an empty listing.
func TestValidatorHostList2022Sample(t *testing.T) {
	body := readSample(t, "hostlist_details-none_vm-processed-window_empty_dtd-list-output_recorded_200.xml")
	sum, err := valCheck(t, body, ValidatorConfig{Root: RootHostList}, 7)
	if err != io.EOF || sum.Hosts != 0 || sum.Root != RootHostList {
		t.Fatalf("err = %v, summary %+v", err, sum)
	}
}
