package qualysim

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The XML as encoding/xml reads it: an independent decoder, so that the
// truth is checked against what a client gets, element by element.

type xmlHost struct {
	ID             uint64   `xml:"ID"`
	IP             string   `xml:"IP"`
	TrackingMethod string   `xml:"TRACKING_METHOD"`
	DNS            string   `xml:"DNS"`
	Hostname       string   `xml:"DNS_DATA>HOSTNAME"`
	Domain         string   `xml:"DNS_DATA>DOMAIN"`
	FQDN           string   `xml:"DNS_DATA>FQDN"`
	NetBIOS        *string  `xml:"NETBIOS"`
	OS             string   `xml:"OS"`
	QGHostID       *string  `xml:"QG_HOSTID"`
	FirstFound     *string  `xml:"FIRST_FOUND_DATE"`
	LastVulnScan   string   `xml:"LAST_VULN_SCAN_DATETIME"`
	LastScan       string   `xml:"LAST_SCAN_DATETIME"`
	LastVMScanned  string   `xml:"LAST_VM_SCANNED_DATE"`
	Duration       int      `xml:"LAST_VM_SCANNED_DURATION"`
	AuthScanned    *string  `xml:"LAST_VM_AUTH_SCANNED_DATE"`
	AuthDuration   *int     `xml:"LAST_VM_AUTH_SCANNED_DURATION"`
	Comments       *string  `xml:"COMMENTS"`
	UserDef1       *string  `xml:"USER_DEF>VALUE_1"`
	AssetGroupIDs  *string  `xml:"ASSET_GROUP_IDS"`
	Tags           []Tag    `xml:"TAGS>TAG"`
	Detections     []xmlDet `xml:"DETECTION_LIST>DETECTION"`
}

type xmlDet struct {
	UniqueVulnID uint64  `xml:"UNIQUE_VULN_ID"`
	QID          int     `xml:"QID"`
	Type         string  `xml:"TYPE"`
	Severity     int     `xml:"SEVERITY"`
	Port         *int    `xml:"PORT"`
	Protocol     *string `xml:"PROTOCOL"`
	SSL          *int    `xml:"SSL"`
	Results      *string `xml:"RESULTS"`
	Status       string  `xml:"STATUS"`
	FirstFound   string  `xml:"FIRST_FOUND_DATETIME"`
	LastFound    string  `xml:"LAST_FOUND_DATETIME"`
	QDS          *struct {
		Severity string `xml:"severity,attr"`
		Value    int    `xml:",chardata"`
	} `xml:"QDS"`
	QDSFactors []struct {
		Name  string `xml:"name,attr"`
		Value string `xml:",chardata"`
	} `xml:"QDS_FACTORS>QDS_FACTOR"`
	TimesFound    int     `xml:"TIMES_FOUND"`
	LastTest      string  `xml:"LAST_TEST_DATETIME"`
	LastUpdate    string  `xml:"LAST_UPDATE_DATETIME"`
	LastFixed     *string `xml:"LAST_FIXED_DATETIME"`
	FirstReopened *string `xml:"FIRST_REOPENED_DATETIME"`
	LastReopened  *string `xml:"LAST_REOPENED_DATETIME"`
	TimesReopened *int    `xml:"TIMES_REOPENED"`
	IsIgnored     int     `xml:"IS_IGNORED"`
	IsDisabled    int     `xml:"IS_DISABLED"`
	Kernel        *int    `xml:"AFFECT_RUNNING_KERNEL"`
	LastProcessed string  `xml:"LAST_PROCESSED_DATETIME"`
}

// known are the elements the xml structs above read, per parent: the test
// fails on any other, so a field the simulator starts writing cannot be
// missing from the truth unnoticed.
var known = map[string][]string{
	"HOST": {"ID", "IP", "TRACKING_METHOD", "DNS", "DNS_DATA", "NETBIOS", "OS", "QG_HOSTID", "FIRST_FOUND_DATE",
		"LAST_VULN_SCAN_DATETIME", "LAST_SCAN_DATETIME", "LAST_VM_SCANNED_DATE", "LAST_VM_SCANNED_DURATION",
		"LAST_VM_AUTH_SCANNED_DATE", "LAST_VM_AUTH_SCANNED_DURATION", "COMMENTS", "USER_DEF", "ASSET_GROUP_IDS",
		"TAGS", "DETECTION_LIST"},
	"DNS_DATA":       {"HOSTNAME", "DOMAIN", "FQDN"},
	"TAGS":           {"TAG"},
	"TAG":            {"TAG_ID", "NAME"},
	"USER_DEF":       {"VALUE_1"},
	"DETECTION_LIST": {"DETECTION"},
	"DETECTION": {"UNIQUE_VULN_ID", "QID", "TYPE", "SEVERITY", "PORT", "PROTOCOL", "SSL", "RESULTS", "STATUS",
		"FIRST_FOUND_DATETIME", "LAST_FOUND_DATETIME", "QDS", "QDS_FACTORS", "TIMES_FOUND", "LAST_TEST_DATETIME",
		"LAST_UPDATE_DATETIME", "LAST_FIXED_DATETIME", "FIRST_REOPENED_DATETIME", "LAST_REOPENED_DATETIME",
		"TIMES_REOPENED", "IS_IGNORED", "IS_DISABLED", "AFFECT_RUNNING_KERNEL", "LAST_PROCESSED_DATETIME"},
	"QDS_FACTORS": {"QDS_FACTOR"},
}

// decodeHosts reads every HOST of body and checks that no element below
// one is unknown to the structs.
func decodeHosts(t *testing.T, body []byte) []xmlHost {
	t.Helper()
	var doc struct {
		Hosts []xmlHost `xml:"RESPONSE>HOST_LIST>HOST"`
	}
	if err := xml.Unmarshal(body, &doc); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	dec := xml.NewDecoder(bytes.NewReader(body))
	var path []string
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch tk := tok.(type) {
		case xml.StartElement:
			if n := len(path); n > 0 && slices.Contains(path, "HOST") {
				if !slices.Contains(known[path[n-1]], tk.Name.Local) {
					t.Fatalf("element %s under %s is not in the truth", tk.Name.Local, strings.Join(path, "/"))
				}
			}
			path = append(path, tk.Name.Local)
		case xml.EndElement:
			path = path[:len(path)-1]
		}
	}
	return doc.Hosts
}

func parseTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse("2006-01-02T15:04:05Z", s)
	if err != nil {
		t.Fatalf("time %q: %v", s, err)
	}
	return v
}

func parseTimePtr(t *testing.T, s *string) *time.Time {
	if s == nil {
		return nil
	}
	return ptr(parseTime(t, *s))
}

// hostFromXML is the truth as read back from the XML.
func hostFromXML(t *testing.T, x xmlHost) HostFields {
	t.Helper()
	if x.FQDN != x.DNS {
		t.Fatalf("host %d: DNS %q, DNS_DATA/FQDN %q", x.ID, x.DNS, x.FQDN)
	}
	scan := x.LastVulnScan
	if scan == "" {
		scan = x.LastScan
	}
	hf := HostFields{ID: x.ID, IP: x.IP, TrackingMethod: x.TrackingMethod, DNS: x.DNS, Hostname: x.Hostname,
		Domain: x.Domain, NetBIOS: x.NetBIOS, OS: strings.TrimSpace(x.OS), LastScan: parseTime(t, scan),
		LastVMScanned: parseTime(t, x.LastVMScanned), LastVMScannedDuration: x.Duration,
		QGHostID: x.QGHostID, FirstFound: parseTimePtr(t, x.FirstFound), LastVMAuthScanned: parseTimePtr(t, x.AuthScanned),
		LastVMAuthScannedDuration: x.AuthDuration, Comments: x.Comments, UserDef1: x.UserDef1, Tags: x.Tags}
	if x.AssetGroupIDs != nil {
		for g := range strings.SplitSeq(*x.AssetGroupIDs, ",") {
			id, err := strconv.ParseUint(g, 10, 64)
			if err != nil {
				t.Fatalf("ASSET_GROUP_IDS %q", *x.AssetGroupIDs)
			}
			hf.AssetGroupIDs = append(hf.AssetGroupIDs, id)
		}
	}
	return hf
}

func detFromXML(t *testing.T, x xmlDet) DetectionTruth {
	t.Helper()
	d := DetectionTruth{UniqueVulnID: x.UniqueVulnID, QID: x.QID, Type: x.Type, Severity: x.Severity, Port: x.Port,
		Protocol: x.Protocol, Results: x.Results, Status: x.Status, FirstFound: parseTime(t, x.FirstFound),
		LastFound: parseTime(t, x.LastFound), TimesFound: x.TimesFound, LastTest: parseTime(t, x.LastTest),
		LastUpdate: parseTime(t, x.LastUpdate), LastFixed: parseTimePtr(t, x.LastFixed),
		FirstReopened: parseTimePtr(t, x.FirstReopened), LastReopened: parseTimePtr(t, x.LastReopened),
		TimesReopened: x.TimesReopened, IsIgnored: x.IsIgnored == 1, IsDisabled: x.IsDisabled == 1,
		LastProcessed: parseTime(t, x.LastProcessed)}
	if x.SSL != nil {
		d.SSL = ptr(*x.SSL == 1)
	}
	if x.QDS != nil {
		d.QDS, d.QDSSeverity = ptr(x.QDS.Value), x.QDS.Severity
	}
	for _, f := range x.QDSFactors {
		d.QDSFactors = append(d.QDSFactors, QDSFactor{f.Name, f.Value})
	}
	if x.Kernel != nil {
		d.AffectRunningKernel = ptr(*x.Kernel == 1)
	}
	return d
}

// TestDetectionRowsAreWhatIsServed: for each combination of output
// switches, the hosts and detections a detection call serves, decoded by
// encoding/xml, equal DetectionRows, host by host and field by field.
func TestDetectionRowsAreWhatIsServed(t *testing.T) {
	f := setup(t, testConfig())
	for _, tc := range []struct {
		name   string
		params []string
		filter Filter
		see    []string // what the answer must hold, so that every branch is compared
	}{
		{"qfetch's defaults", []string{"status", "New,Active,Re-Opened,Fixed", "show_reopened_info", "1"},
			Filter{Statuses: AllStatuses, ShowReopened: true},
			[]string{"status New", "status Active", "status Fixed", "status Re-Opened", "type Confirmed", "type Potential",
				"port", "reopened", "kernel", "fixed", "netbios", "results", "factors"}},
		{"simulator defaults", nil, Filter{}, []string{"qds", "factors"}},
		{"igs, no factors, window", []string{"show_igs", "1", "show_qds_factors", "0", "show_reopened_info", "1",
			"vm_processed_after", "2025-12-25"},
			Filter{ShowIGs: true, NoQDSFactors: true, ShowReopened: true, After: time.Date(2025, 12, 25, 0, 0, 0, 0, time.UTC)},
			[]string{"type Info", "qds"}},
		{"no qds, no results, ids", []string{"show_qds", "0", "show_results", "0", "status", "Fixed,Re-Opened",
			"ids", strconv.FormatUint(f.sim.HostID(10), 10) + "-" + strconv.FormatUint(f.sim.HostID(200), 10)},
			Filter{NoQDS: true, NoResults: true, Statuses: StatusFixed | StatusReopened,
				IDs: []IDRange{{f.sim.HostID(10), f.sim.HostID(200)}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := form(append([]string{"action", "list", "truncation_limit", "0"}, tc.params...)...)
			a := f.call(t, http.MethodPost, detectionPath, q)
			if a.status != 200 {
				t.Fatalf("status %d", a.status)
			}
			served := decodeHosts(t, a.body)
			i, dets := 0, 0
			seen := map[string]bool{}
			for id, want := range f.sim.DetectionRows(tc.filter) {
				if i >= len(served) {
					t.Fatalf("truth has host %d beyond the %d served", id, len(served))
				}
				x := served[i]
				got := HostDetections{Host: hostFromXML(t, x)}
				for _, d := range x.Detections {
					got.Detections = append(got.Detections, detFromXML(t, d))
				}
				if id != want.Host.ID || !reflect.DeepEqual(got, want) {
					t.Fatalf("host %d (#%d):\nserved %+v\ntruth  %+v", id, i, got, want)
				}
				for _, d := range want.Detections {
					dets++
					seen["status "+d.Status] = true
					seen["type "+d.Type] = true
					seen["port"] = seen["port"] || d.Port != nil
					seen["reopened"] = seen["reopened"] || d.TimesReopened != nil
					seen["kernel"] = seen["kernel"] || d.AffectRunningKernel != nil
					seen["fixed"] = seen["fixed"] || d.LastFixed != nil
					seen["results"] = seen["results"] || d.Results != nil
					seen["qds"] = seen["qds"] || d.QDS != nil
					seen["factors"] = seen["factors"] || d.QDSFactors != nil
				}
				seen["netbios"] = seen["netbios"] || want.Host.NetBIOS != nil
				i++
			}
			if i != len(served) || i == 0 {
				t.Fatalf("truth has %d hosts, %d served", i, len(served))
			}
			for _, k := range tc.see {
				if !seen[k] {
					t.Errorf("no detection with %s: the comparison misses a branch", k)
				}
			}
			if tc.filter.NoResults && seen["results"] || tc.filter.NoQDS && seen["qds"] {
				t.Errorf("output switches not applied: %v", seen)
			}
			t.Logf("%d hosts, %d detections agree", i, dets)
		})
	}
}

// TestHostRowsAreWhatIsServed: the HOSTs a Host List call serves with
// details=Basic and All, paged, equal HostRows.
func TestHostRowsAreWhatIsServed(t *testing.T) {
	f := setup(t, testConfig())
	for _, details := range []string{"Basic", "All", ""} {
		t.Run("details="+details, func(t *testing.T) {
			q := form("action", "list", "truncation_limit", "70", "vm_processed_before", "2025-12-31")
			if details != "" {
				q.Set("details", details)
			}
			var served []xmlHost
			a := f.call(t, http.MethodPost, hostListPath, q)
			for {
				if a.status != 200 {
					t.Fatalf("status %d", a.status)
				}
				served = append(served, decodeHosts(t, a.body)...)
				d := parseDoc(t, a.body)
				if d.warnURL == "" {
					break
				}
				a = f.getURL(t, d.warnURL)
			}
			i := 0
			all := map[string]bool{}
			for want := range f.sim.HostRows(Filter{HostDetails: details, Before: time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC)}) {
				if i >= len(served) {
					t.Fatalf("truth has host %d beyond the %d served", want.ID, len(served))
				}
				if got := hostFromXML(t, served[i]); !reflect.DeepEqual(got, want) {
					t.Fatalf("host #%d:\nserved %+v\ntruth  %+v", i, got, want)
				}
				all["qg"] = all["qg"] || want.QGHostID != nil
				all["auth"] = all["auth"] || want.LastVMAuthScanned != nil
				all["comments"] = all["comments"] || want.Comments != nil
				all["two groups"] = all["two groups"] || len(want.AssetGroupIDs) == 2
				i++
			}
			if i != len(served) || i < 100 {
				t.Fatalf("truth has %d hosts, %d served", i, len(served))
			}
			if details == "All" && !(all["qg"] && all["auth"] && all["comments"] && all["two groups"]) {
				t.Errorf("details=All: only %v among %d hosts", all, i)
			}
			for k, v := range all {
				if v && details != "All" {
					t.Errorf("details=%q: an All field (%s) is present", details, k)
				}
			}
		})
	}
	// None yields IDs alone, the IDs the Host List gives.
	var ids []uint64
	for hf := range f.sim.HostRows(Filter{HostDetails: "None"}) {
		if !reflect.DeepEqual(hf, HostFields{ID: hf.ID}) {
			t.Fatalf("details=None row %+v", hf)
		}
		ids = append(ids, hf.ID)
	}
	if want := collectIDs(f.sim.Hosts(Filter{})); !slices.Equal(ids, want) {
		t.Fatalf("details=None: %d IDs, Hosts gives %d", len(ids), len(want))
	}
}
