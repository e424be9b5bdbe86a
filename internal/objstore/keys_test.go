package objstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/runid"
)

func TestKeys(t *testing.T) {
	const run = "20260301T020000Z-7f3a"
	cases := []struct{ got, want string }{
		{HostListPageKey("qualys", run, 1), "qualys/runs/" + run + "/hostlist/page-000001.xml"},
		{HostListPageKey("qualys", run, 123456), "qualys/runs/" + run + "/hostlist/page-123456.xml"},
		{HostListPageKey("", run, 2), "runs/" + run + "/hostlist/page-000002.xml"},
		{HostListPageKey("/a/b/", run, 2), "a/b/runs/" + run + "/hostlist/page-000002.xml"},
		{DetectionKey("qualys", run, 1, 1), "qualys/runs/" + run + "/detections/batch-000001.xml"},
		{DetectionKey("qualys", run, 1, 0), "qualys/runs/" + run + "/detections/batch-000001.xml"},
		{DetectionKey("qualys", run, 1, 2), "qualys/runs/" + run + "/detections/batch-000001-p0002.xml"},
		{DetectionKey("qualys", run, 999999, 9999), "qualys/runs/" + run + "/detections/batch-999999-p9999.xml"},
		{DetectionKey("qualys", run, 1000000, 1), "qualys/runs/" + run + "/detections/batch-a1000000.xml"},
		{DetectionKey("qualys", run, 12345678, 10000), "qualys/runs/" + run + "/detections/batch-b12345678-pa10000.xml"},
		{DetectionKey("", run, 7, 1), "runs/" + run + "/detections/batch-000007.xml"},
		{ManifestKey("qualys", run), "qualys/runs/" + run + "/manifest.json"},
		{SuccessKey("qualys", run), "qualys/runs/" + run + "/_SUCCESS"},
		{StatusKey("qualys", run), "qualys/runs/" + run + "/status.json"},
		{LatestKey("qualys"), "qualys/latest.json"},
		{LatestKey(""), "latest.json"},
		{RunPrefix("qualys", run), "qualys/runs/" + run + "/"},
		{RunPrefix("", run), "runs/" + run + "/"},
	}
	for _, tc := range cases {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
		if !strings.HasSuffix(tc.got, "/") {
			if err := ValidKey(tc.got); err != nil {
				t.Errorf("%q is not a valid key: %v", tc.got, err)
			}
		}
	}
}

// Every key of a run is under its prefix, and no other run's prefix.
func TestRunPrefixSeparatesRuns(t *testing.T) {
	keys := []string{HostListPageKey("q", "r1", 1), DetectionKey("q", "r1", 1, 3), ManifestKey("q", "r1"), SuccessKey("q", "r1"), StatusKey("q", "r1")}
	for _, k := range keys {
		if !strings.HasPrefix(k, RunPrefix("q", "r1")) || strings.HasPrefix(k, RunPrefix("q", "r10")) {
			t.Errorf("%q: under the wrong run prefix", k)
		}
	}
}

func TestBadRunMakesInvalidKey(t *testing.T) {
	for _, run := range []string{"", "..", "a//b", ".x"} {
		if err := ValidKey(ManifestKey("q", run)); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("run %q: ValidKey = %v, want ErrInvalidKey", run, err)
		}
	}
}

func TestSeqOrder(t *testing.T) {
	ns := []int{0, 1, 9, 10, 99999, 999999, 1000000, 1000001, 9999999, 10000000, 123456789, 1<<62 + 5}
	for i := 1; i < len(ns); i++ {
		a, b := seq(ns[i-1], 6), seq(ns[i], 6)
		if a >= b {
			t.Errorf("seq(%d) = %q does not sort before seq(%d) = %q", ns[i-1], a, ns[i], b)
		}
	}
}

func TestSeqNegativePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	DetectionKey("q", "r", -1, 1)
}

func FuzzSeqOrder(f *testing.F) {
	f.Add(uint64(999999), uint64(1000000), uint8(6))
	f.Add(uint64(9999), uint64(10000), uint8(4))
	f.Fuzz(func(t *testing.T, a, b uint64, width uint8) {
		w := int(width%8) + 1
		x, y := int(a>>1), int(b>>1) // non-negative ints
		sx, sy := seq(x, w), seq(y, w)
		if (x < y) != (sx < sy) || (x == y) != (sx == sy) {
			t.Errorf("seq(%d)=%q, seq(%d)=%q: order differs", x, sx, y, sy)
		}
	})
}

func TestValidKey(t *testing.T) {
	good := []string{"a", "a/b", "runs/r1/_SUCCESS", "a b/ü", "a..b", "a/b.", strings.Repeat("k", MaxKeyLen)}
	for _, k := range good {
		if err := ValidKey(k); err != nil {
			t.Errorf("ValidKey(%q) = %v", k, err)
		}
	}
	bad := []string{"", "/", "/a", "a/", "a//b", ".", "..", "../a", "a/..", "a/./b", ".x", "a/.tmp-1",
		"a\x00", "a\x1f", "a\x7f", "\xff\xfe", strings.Repeat("k", MaxKeyLen+1)}
	for _, k := range bad {
		err := ValidKey(k)
		if !errors.Is(err, ErrInvalidKey) || failure.ClassOf(err) != failure.ClassPermanent {
			t.Errorf("ValidKey(%.30q) = %v, want a permanent ErrInvalidKey", k, err)
		}
	}
}

// A valid key never leaves the directory it is joined to, and S3 and the
// directory store agree on it.
func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a/./b", "a//b", ".hidden", "x/..", "ü/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if ValidKey(key) != nil {
			return
		}
		for seg := range strings.SplitSeq(key, "/") {
			if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, tmpPrefix) {
				t.Fatalf("ValidKey accepted %q with segment %q", key, seg)
			}
		}
		if strings.HasPrefix(key, "/") || len(key) > MaxKeyLen {
			t.Fatalf("ValidKey accepted %q", key)
		}
	})
}

func TestKBPassKeys(t *testing.T) {
	const pass = "kb-20261204T120000Z-a1b2c3"
	for _, tc := range []struct{ got, want string }{
		{RunPrefix("p", pass), "p/kb/" + pass + "/"},
		{HostListPageKey("p", pass, 1), "p/kb/" + pass + "/qids/page-000001.xml"},
		{DetectionKey("p", pass, 3, 2), "p/kb/" + pass + "/vulns/batch-000003-p0002.xml"},
		{DetectionPartKey("p", pass, 3, "1.2", 0), "p/kb/" + pass + "/vulns/batch-000003.1.2.xml"},
		{ManifestKey("p", pass), "p/kb/" + pass + "/manifest.json"},
		{SuccessKey("", pass), "kb/" + pass + "/_SUCCESS"},
		{KBLatestKey("/p/"), "p/kb/latest.json"},
		{RunPrefix("p", "20261204T120000Z-a1b2c3"), "p/runs/20261204T120000Z-a1b2c3/"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if kbRunPrefix != runid.KBPrefix {
		t.Errorf("objstore's KB pass prefix %q differs from runid.KBPrefix %q", kbRunPrefix, runid.KBPrefix)
	}
}
