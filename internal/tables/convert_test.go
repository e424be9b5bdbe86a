package tables

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/qfetch/qfetch/internal/failure"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// TestGolden converts every real sample and compares every value of every
// row, read back with parquet-go's reader, with its golden file.
func TestGolden(t *testing.T) {
	samples, err := filepath.Glob("testdata/samples/*.xml")
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples: %v", err)
	}
	for _, path := range samples {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			var file []byte
			switch {
			case strings.HasPrefix(name, "hld_"):
				file, _ = convertDetections(t, Options{}, readSample(t, name))
			case strings.HasPrefix(name, "hostlist_"):
				file, _ = convertHosts(t, Options{}, readSample(t, name))
			case strings.HasPrefix(name, "kb_"):
				file, _ = convertKB(t, Options{}, readSample(t, name))
			default:
				t.Fatalf("sample %s is of no table", name)
			}
			got := dump(t, file)
			golden := filepath.Join("testdata", "golden", strings.TrimSuffix(name, ".xml")+".txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("rows differ from %s (go test -run TestGolden -update rewrites it):\n%s", golden, firstDiff(got, string(want)))
			}
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return "line " + strconv.Itoa(i+1) + ":\n got  " + g[i] + "\n want " + w[i]
		}
	}
	return "lengths differ: got " + strconv.Itoa(len(g)) + " lines, want " + strconv.Itoa(len(w))
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestSampleRows checks, by hand, the values the golden files hold that
// matter most: the ones read from attributes, CDATA, optional elements.
func TestSampleRows(t *testing.T) {
	file, st := convertDetections(t, Options{}, readSample(t, "hld_1host_qds_unique-vuln-id_warning-truncated_elastic-fixture.xml"))
	rows := readRows[DetectionRow](t, file)
	if st.Rows != 2 || st.Hosts != 1 || st.Objects != 1 || st.XMLBytes != 5352 || len(rows) != 2 {
		t.Fatalf("stats %+v, %d rows; want 2 rows of 1 host from 5352 bytes", st, len(rows))
	}
	r := rows[1]
	switch {
	case r.Run != "run-1" || r.SourceKey != "runs/run-1/detections/batch-000001.xml" || r.SchemaVersion != SchemaVersion:
		t.Errorf("source columns %q %q %d", r.Run, r.SourceKey, r.SchemaVersion)
	case r.HostID != 12048633 || r.OS != "Windows 2016/2019/10" || r.DNSDomain != "adfs.local" || r.NetBIOS != "ADFSSRVR":
		t.Errorf("host columns %d %q %q %q (whitespace around CDATA must go)", r.HostID, r.OS, r.DNSDomain, r.NetBIOS)
	case !r.LastPCScannedDate.Equal(ts("2023-06-28T09:58:12Z")) || *r.LastVMScannedDuration != 1113:
		t.Errorf("host scan columns %v %v", r.LastPCScannedDate, *r.LastVMScannedDuration)
	case *r.UniqueVulnID != 6666666666 || r.QID != 197597 || *r.Severity != 5 || r.Port != nil || *r.SSL:
		t.Errorf("detection head %d %d %d %v %v", *r.UniqueVulnID, r.QID, *r.Severity, r.Port, *r.SSL)
	case *r.QDS != 95 || r.QDSSeverity != "CRITICAL" || len(r.QDSFactors) != 9:
		t.Errorf("QDS %d %q, %d factors", *r.QDS, r.QDSSeverity, len(r.QDSFactors))
	case r.QDSFactors[1] != (QDSFactor{Name: "exploit_maturity", Value: "weaponized,poc"}):
		t.Errorf("factor %+v", r.QDSFactors[1])
	case *r.AffectRunningKernel || r.AffectRunningService != nil || r.TimesReopened != nil:
		t.Errorf("flags %v %v %v", *r.AffectRunningKernel, r.AffectRunningService, r.TimesReopened)
	case !r.LastFixedDatetime.Equal(ts("2022-12-14T06:52:57Z")) || !r.FirstReopenedDatetime.IsZero():
		t.Errorf("fix times %v %v", r.LastFixedDatetime, r.FirstReopenedDatetime)
	case !strings.HasPrefix(r.Results, "Package Installed Version") || !strings.HasSuffix(r.Results, "1027_4.15.0-1126.135  1047"):
		t.Errorf("results %q", r.Results)
	}

	file, _ = convertDetections(t, Options{}, readSample(t, "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml"))
	rows = readRows[DetectionRow](t, file)
	if len(rows) != 3 || rows[0].Results != "Certificate #0 CN=2k8r2-u-10-11(2k8r2-u-10-11) doesn&apos;tresolve" ||
		*rows[0].Port != 3389 || !*rows[0].SSL || rows[0].UniqueVulnID != nil || rows[0].QDSFactors != nil {
		t.Errorf("jupiterone rows: %d, first %q port %v", len(rows), rows[0].Results, rows[0].Port)
	}

	file, _ = convertDetections(t, Options{}, readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml"))
	rows = readRows[DetectionRow](t, file)
	if len(rows) != 8 || rows[6].HostID != 10112200 || rows[6].Type != "Potential" || rows[6].Status != "New" || rows[6].Port != nil || rows[6].OS != "" {
		t.Errorf("demisto rows: %d, row 6 %d %q %q %v %q", len(rows), rows[6].HostID, rows[6].Type, rows[6].Status, rows[6].Port, rows[6].OS)
	}
	if !strings.Contains(rows[1].Results, ";; -&gt;&gt;HEADER&lt;&lt;-") {
		t.Errorf("references inside CDATA are text: %.80q", rows[1].Results)
	}
}

// TestNulls checks that an omitted element is NULL in the file, not a
// zero value.
func TestNulls(t *testing.T) {
	file, _ := convertDetections(t, Options{}, readSample(t, "hld_1host_3det_multiline-cdata_jupiterone-fixture.xml"))
	f, err := parquet.OpenFile(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	rows := make([]parquet.Row, 1)
	if n, _ := f.RowGroups()[0].Rows().ReadRows(rows); n != 1 {
		t.Fatal("no row")
	}
	null := map[string]bool{}
	for _, v := range rows[0] {
		null[strings.Join(f.Schema().Columns()[v.Column()], ".")] = v.IsNull()
	}
	for col, want := range map[string]bool{
		"ipv6": true, "asset_id": true, "unique_vuln_id": true, "last_fixed_datetime": true, "qds": true,
		"qds_factors.list.element.name": true, "tags.list.element.id": true, "affect_running_kernel": true,
		"ip": false, "port": false, "ssl": false, "is_ignored": false, "last_processed_datetime": false,
	} {
		if got, ok := null[col]; !ok || got != want {
			t.Errorf("column %s: null %v (present %v), want null %v", col, got, ok, want)
		}
	}
}

// A synthetic document with the elements no real sample has: TAGS,
// ASSET_ID, IPV6, reopened info and the Host List's details=All fields.
const tagsDetections = `<?xml version="1.0"?>
<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><DATETIME>2026-01-01T00:00:00Z</DATETIME><HOST_LIST>
<HOST><ID>42</ID><ASSET_ID>4242</ASSET_ID><IP>10.0.0.1</IP><IPV6>fe80::1</IPV6><NETWORK_ID>0</NETWORK_ID>
<QG_HOSTID>abc-def</QG_HOSTID><TAGS><TAG><TAG_ID>7</TAG_ID><NAME><![CDATA[Prod & DMZ]]></NAME></TAG><TAG><TAG_ID>8</TAG_ID><NAME>Linux</NAME></TAG></TAGS>
<DETECTION_LIST><DETECTION><QID>1</QID><TYPE>Confirmed</TYPE><FQDN>a.example</FQDN><QDS severity='L&amp;W'>0</QDS>
<QDS_FACTORS><QDS_FACTOR name="a&quot;b">x</QDS_FACTOR></QDS_FACTORS>
<FIRST_REOPENED_DATETIME>2025-01-02T03:04:05+01:00</FIRST_REOPENED_DATETIME><TIMES_REOPENED>0</TIMES_REOPENED>
<AFFECT_RUNNING_SERVICE>1</AFFECT_RUNNING_SERVICE><AFFECT_EXPLOITABLE_CONFIG>0</AFFECT_EXPLOITABLE_CONFIG><SERVICE>ssh</SERVICE><INSTANCE>i</INSTANCE></DETECTION>
</DETECTION_LIST></HOST></HOST_LIST></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`

const tagsHostList = `<HOST_LIST_OUTPUT><RESPONSE><HOST_LIST>
<HOST><ID>42</ID><IP>10.0.0.1</IP><TRACKING_METHOD>IP</TRACKING_METHOD><DNS_DATA><HOSTNAME>h</HOSTNAME><DOMAIN>d</DOMAIN><FQDN>h.d</FQDN></DNS_DATA>
<OS>Linux</OS><LAST_VULN_SCAN_DATETIME>2026-01-02T00:00:00Z</LAST_VULN_SCAN_DATETIME><LAST_COMPLIANCE_SCAN_DATETIME>2026-01-03T00:00:00Z</LAST_COMPLIANCE_SCAN_DATETIME>
<OWNER>me</OWNER><COMMENTS>c</COMMENTS><ASSET_GROUP_IDS>1, 2,3</ASSET_GROUP_IDS><TRURISK_SCORE>0</TRURISK_SCORE>
<TAGS><TAG><TAG_ID>7</TAG_ID><NAME>Prod</NAME></TAG></TAGS></HOST>
<HOST><ID>43</ID></HOST>
</HOST_LIST></RESPONSE></HOST_LIST_OUTPUT>`

func TestTagsAndDetails(t *testing.T) {
	file, _ := convertDetections(t, Options{}, []byte(tagsDetections))
	rows := readRows[DetectionRow](t, file)
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	r := rows[0]
	switch {
	case len(r.Tags) != 2 || *r.Tags[0].ID != 7 || r.Tags[0].Name != "Prod & DMZ" || r.Tags[1].Name != "Linux":
		t.Errorf("tags %+v", r.Tags)
	case *r.AssetID != 4242 || r.IPv6 != "fe80::1" || *r.NetworkID != 0 || r.QGHostID != "abc-def":
		t.Errorf("host %v %q %v %q", r.AssetID, r.IPv6, r.NetworkID, r.QGHostID)
	case *r.QDS != 0 || r.QDSSeverity != "L&W" || r.QDSFactors[0] != (QDSFactor{Name: `a"b`, Value: "x"}):
		t.Errorf("qds %v %q %+v", r.QDS, r.QDSSeverity, r.QDSFactors)
	case !r.FirstReopenedDatetime.Equal(ts("2025-01-02T02:04:05Z")) || *r.TimesReopened != 0:
		t.Errorf("reopened %v %v", r.FirstReopenedDatetime, r.TimesReopened)
	case !*r.AffectRunningService || *r.AffectExploitableConfig || r.Service != "ssh" || r.Instance != "i" || r.FQDN != "a.example":
		t.Errorf("detection %v %v %q %q %q", r.AffectRunningService, r.AffectExploitableConfig, r.Service, r.Instance, r.FQDN)
	}

	file, st := convertHosts(t, Options{}, []byte(tagsHostList))
	hosts := readRows[HostRow](t, file)
	if len(hosts) != 2 || st.Hosts != 2 || st.Rows != 2 {
		t.Fatalf("%d host rows, stats %+v", len(hosts), st)
	}
	h := hosts[0]
	switch {
	case h.HostID != 42 || h.DNSFQDN != "h.d" || h.OS != "Linux" || !h.LastScanDatetime.Equal(ts("2026-01-02T00:00:00Z")):
		t.Errorf("host %+v", h.hostCols)
	case !h.LastComplianceScanDatetime.Equal(ts("2026-01-03T00:00:00Z")) || h.Owner != "me" || h.Comments != "c":
		t.Errorf("extra %+v", h.hostExtraCols)
	case len(h.AssetGroupIDs) != 3 || h.AssetGroupIDs[2] != 3 || *h.TruRiskScore != 0 || h.AssetRiskScore != nil:
		t.Errorf("groups %v, scores %v %v", h.AssetGroupIDs, h.TruRiskScore, h.AssetRiskScore)
	case len(h.Tags) != 1 || h.Tags[0].Name != "Prod":
		t.Errorf("tags %+v", h.Tags)
	case hosts[1].HostID != 43 || hosts[1].Tags != nil || hosts[1].Owner != "" || hosts[1].AssetGroupIDs != nil:
		t.Errorf("second host carries the first's values: %+v", hosts[1])
	case hosts[1].SourceOffset <= h.SourceOffset || !strings.HasPrefix(tagsHostList[hosts[1].SourceOffset:], "<HOST><ID>43"):
		t.Errorf("source offset %d does not point at the HOST", hosts[1].SourceOffset)
	}
}

// TestIDSet: a Host List page with details=None gives the IDs alone,
// ID_RANGE expanded.
func TestIDSet(t *testing.T) {
	page := `<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID>5</ID><ID_RANGE>7-9</ID_RANGE><ID>20</ID></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`
	file, st := convertHosts(t, Options{}, []byte(page), readSample(t, "hostlist_details-none_idset_recorded_200.xml"))
	var ids []int64
	for _, r := range readRows[HostRow](t, file) {
		ids = append(ids, r.HostID)
		if r.IP != "" || r.Tags != nil {
			t.Errorf("an ID row has host columns: %+v", r)
		}
	}
	if want := []int64{5, 7, 8, 9, 20, 107800671}; !equal(ids, want) || st.Hosts != 6 || st.Objects != 2 {
		t.Errorf("ids %v, stats %+v; want %v", ids, st, want)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSimulator converts simulator answers: every DETECTION a row, every
// Host List HOST (details=Basic) a row, with the values the XML holds.
func TestSimulator(t *testing.T) {
	s := newSim(300)
	defer s.Close()
	body := simDetections(t, s, 0, 300)
	file, st := convertDetections(t, Options{RowGroupRows: 100}, body)
	rows := readRows[DetectionRow](t, file)
	if want := int64(bytes.Count(body, []byte("<DETECTION>"))); st.Rows != want || int64(len(rows)) != want {
		t.Fatalf("%d rows (stats %d), want %d", len(rows), st.Rows, want)
	}
	if want := int64(bytes.Count(body, []byte("<HOST>"))); st.Hosts != want {
		t.Errorf("stats.Hosts %d, want %d", st.Hosts, want)
	}
	counts := s.DetectionCounts(qualysimFilterAll())
	perHost := map[int64]int{}
	for _, r := range rows {
		perHost[r.HostID]++
		if !strings.HasPrefix(string(body[r.SourceOffset:]), "<DETECTION>") {
			t.Fatalf("row of QID %d: source_offset %d does not point at its DETECTION", r.QID, r.SourceOffset)
		}
		if r.LastProcessedDatetime.IsZero() || r.Status == "" || r.IP == "" {
			t.Fatalf("row with empty columns: %+v", r)
		}
		// RESULTS is kept byte for byte, whitespace included.
		det := string(body[r.SourceOffset:])
		det = det[:strings.Index(det, "</DETECTION>")]
		if i := strings.Index(det, "<![CDATA["); i >= 0 {
			want := det[i+len("<![CDATA[") : strings.Index(det, "]]></RESULTS>")]
			if r.Results != want {
				t.Fatalf("QID %d: results %q, the XML holds %q", r.QID, r.Results, want)
			}
		}
	}
	for id, n := range counts {
		if perHost[int64(id)] != n {
			t.Errorf("host %d: %d rows, the simulator says %d", id, perHost[int64(id)], n)
		}
	}
	f, _ := parquet.OpenFile(bytes.NewReader(file), int64(len(file)))
	if want := (len(rows) + 99) / 100; len(f.RowGroups()) != want {
		t.Errorf("%d row groups of at most 100 rows for %d rows, want %d", len(f.RowGroups()), len(rows), want)
	}

	page := simServe(t, s, simHostListPath, "action=list&details=Basic&truncation_limit=0")
	hfile, hst := convertHosts(t, Options{}, page)
	hosts := readRows[HostRow](t, hfile)
	if want := bytes.Count(page, []byte("<HOST>")); len(hosts) != want || hst.Hosts != int64(want) || want == 0 {
		t.Fatalf("%d host rows, want %d", len(hosts), want)
	}
	for _, h := range hosts {
		if h.IP == "" || h.DNS == "" || h.OS == "" || h.LastScanDatetime.IsZero() || h.LastVMScannedDuration == nil {
			t.Fatalf("host row without its Basic fields: %+v", h)
		}
	}
}

// TestDeterministic: the same objects give the same bytes.
func TestDeterministic(t *testing.T) {
	s := newSim(200)
	defer s.Close()
	body := simDetections(t, s, 0, 200)
	a, _ := convertDetections(t, Options{RowGroupRows: 500}, body, readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml"))
	b, _ := convertDetections(t, Options{RowGroupRows: 500}, body, readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml"))
	if !bytes.Equal(a, b) {
		t.Error("two conversions of the same objects differ")
	}
	h1, _ := convertHosts(t, Options{}, []byte(tagsHostList))
	h2, _ := convertHosts(t, Options{}, []byte(tagsHostList))
	if !bytes.Equal(h1, h2) {
		t.Error("two conversions of the same page differ")
	}
	var r1, r2 bytes.Buffer
	run := RunRow{Run: "r", RunDate: ts("2026-01-01T00:00:00Z"), Before: ts("2026-01-01T00:00:00Z"), Completed: ts("2026-01-01T01:00:00Z")}
	if WriteRun(&r1, run) != nil || WriteRun(&r2, run) != nil || !bytes.Equal(r1.Bytes(), r2.Bytes()) {
		t.Error("two runs rows differ")
	}
}

func TestWriteRun(t *testing.T) {
	var buf bytes.Buffer
	in := RunRow{
		Run: "20260101T000000Z", RunDate: ts("2026-01-01T00:00:00Z"), Before: ts("2026-01-01T00:00:00Z"),
		Completed: ts("2026-01-01T01:00:00+01:00"), Batches: 3, HostListPages: 2, DetectionRows: 1000, HostRows: 40,
	}
	if err := WriteRun(&buf, in); err != nil {
		t.Fatal(err)
	}
	rows := readRows[runCols](t, buf.Bytes())
	want := runCols{Run: in.Run, SchemaVersion: SchemaVersion, Created: in.RunDate, WindowBefore: in.Before,
		Completed: ts("2026-01-01T00:00:00Z"), Batches: 3, HostListPages: 2, DetectionRows: 1000, HostRows: 40}
	if len(rows) != 1 || !rows[0].Completed.Equal(want.Completed) || rows[0].Run != want.Run || rows[0].Batches != 3 ||
		rows[0].DetectionRows != 1000 || !rows[0].WindowAfter.IsZero() || rows[0].HostRows != 40 || rows[0].HostListPages != 2 {
		t.Errorf("runs rows %+v, want %+v", rows, want)
	}
	f, _ := parquet.OpenFile(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if v, ok := f.Lookup(MetaSchemaVersion); !ok || v != "1" {
		t.Errorf("metadata %s = %q", MetaSchemaVersion, v)
	}
}

// TestMalformed: whatever is wrong with an object, the error wraps
// ErrMalformed and is permanent, and the writer refuses to go on.
func TestMalformed(t *testing.T) {
	good := readSample(t, "hld_2hosts_8det_entities-in-cdata_tabs_demisto-fixture.xml")
	cases := map[string]string{
		"cut short":       string(good[:len(good)/2]),
		"empty":           "",
		"error document":  string(readErrorSample(t)),
		"wrong root":      `<HOST_LIST_OUTPUT><RESPONSE/></HOST_LIST_OUTPUT>`,
		"nested error":    `<HOST_LIST_VM_DETECTION_OUTPUT><RESPONSE><SIMPLE_RETURN/></RESPONSE></HOST_LIST_VM_DETECTION_OUTPUT>`,
		"not XML":         "<html><body>502 Bad Gateway",
		"bad time":        strings.Replace(string(good), "2023-05-16T15:26:53Z", "yesterday", 1),
		"bad number":      strings.Replace(string(good), "<QID>11827</QID>", "<QID>11827x</QID>", 1),
		"no QID":          strings.Replace(string(good), "<QID>11827</QID>", "", 1),
		"bad flag":        strings.Replace(string(good), "<SSL>0</SSL>", "<SSL>2</SSL>", 1),
		"no host ID":      strings.Replace(string(good), "<ID>143111841</ID>", "", 1),
		"trailing junk":   string(good) + "<X/>",
		"mismatched tags": strings.Replace(string(good), "</STATUS>", "</STATE>", 1),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			w := NewDetectionWriter(&buf, Source{Run: "r"}, Options{})
			err := w.Add(context.Background(), "k.xml", strings.NewReader(body))
			if !errors.Is(err, ErrMalformed) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Fatalf("error %v (class %v), want ErrMalformed, permanent", err, failure.ClassOf(err))
			}
			if !strings.Contains(err.Error(), "k.xml") {
				t.Errorf("error %q does not name the object", err)
			}
			if err2 := w.Add(context.Background(), "k2.xml", bytes.NewReader(good)); !errors.Is(err2, ErrMalformed) {
				t.Errorf("a later Add: %v, want the first error", err2)
			}
			if _, err3 := w.Close(); !errors.Is(err3, ErrMalformed) {
				t.Errorf("Close: %v, want the first error", err3)
			}
		})
	}
	var buf bytes.Buffer
	h := NewHostWriter(&buf, Source{Run: "r"}, Options{})
	if err := h.Add(context.Background(), "p.xml", bytes.NewReader(good)); !errors.Is(err, ErrMalformed) {
		t.Errorf("a detection document as a Host List page: %v", err)
	}
	h = NewHostWriter(&buf, Source{Run: "r"}, Options{})
	if err := h.Add(context.Background(), "p.xml", strings.NewReader(`<HOST_LIST_OUTPUT><RESPONSE><ID_SET><ID_RANGE>9-1</ID_RANGE></ID_SET></RESPONSE></HOST_LIST_OUTPUT>`)); !errors.Is(err, ErrMalformed) {
		t.Errorf("a backwards ID_RANGE: %v", err)
	}
}

func readErrorSample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "qualys", "testdata", "samples", "error_simple-return_1905_bad-ids_recorded_400.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestContext: a cancelled context stops a conversion with its error.
func TestContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w := NewDetectionWriter(&bytes.Buffer{}, Source{Run: "r"}, Options{})
	if err := w.Add(ctx, "k", strings.NewReader(tagsDetections)); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

// TestSmallReads: attributes and text split across reads of one byte.
func TestSmallReads(t *testing.T) {
	whole, _ := convertDetections(t, Options{}, []byte(tagsDetections))
	var buf bytes.Buffer
	w := NewDetectionWriter(&buf, Source{Run: "run-1"}, Options{})
	if err := w.Add(context.Background(), "runs/run-1/detections/batch-000001.xml", oneByte{strings.NewReader(tagsDetections)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(whole, buf.Bytes()) {
		t.Errorf("one-byte reads give another file:\n%s", firstDiff(dump(t, buf.Bytes()), dump(t, whole)))
	}
}

type oneByte struct{ r *strings.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }
