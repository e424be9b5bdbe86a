package qualysim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// hashSink keeps a document for hashing.
type hashSink struct{ buf bytes.Buffer }

func (h *hashSink) write(p []byte) error { h.buf.Write(p); return nil }
func (h *hashSink) beforeClose() error   { return nil }

// generate renders one answer of s to form on ep, without HTTP.
func generate(t testing.TB, s *Sim, ep endpoint, form string) []byte {
	t.Helper()
	ps, err := parseParams(form, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, aerr := parseRequest(ep, ps)
	if aerr != nil {
		t.Fatalf("%s: %s", form, aerr.text)
	}
	path := detectionPath
	if ep == epHostList {
		path = hostListPath
	}
	pg := page{base: "http://127.0.0.1:1", path: path, now: s.clock.Now().Unix()}
	h := &hashSink{}
	o := &out{sink: h}
	if ep == epHostList {
		s.writeHostList(o, req, pg)
	} else {
		s.writeDetections(o, req, pg)
	}
	return h.buf.Bytes()
}

// TestGeneratedBytesPinned pins the generator's output, byte for byte, for
// documents that cover every branch of the HOST and DETECTION writers: a
// refactor of the generator must not change a byte (the truth API reads
// the same values).
func TestGeneratedBytesPinned(t *testing.T) {
	cfg := Config{Seed: 11, Hosts: 2000, MeanDetections: 6, ResultsSize: 80, ConcurrencyLimit: Off, RateLimit: Off}
	ranges := cfg
	ranges.IDRanges = true
	noResults := cfg
	noResults.ResultsSize = -1
	for _, tc := range []struct {
		name string
		cfg  Config
		ep   endpoint
		form string
		want string
	}{
		{"detections default", cfg, epDetection, "action=list&truncation_limit=0",
			"d253d5b498fb5559b703016f46c5ff289c7c4b5ba4f2e2c666c2bcdbe453f467"},
		{"detections all statuses igs reopened", cfg, epDetection,
			"action=list&truncation_limit=0&show_igs=1&show_reopened_info=1&status=New,Active,Re-Opened,Fixed",
			"37a76862093eac9b99cb1b76bba29a40553f230be89a4b40cfab7c26be3427a5"},
		{"detections no qds factors no results", cfg, epDetection,
			"action=list&truncation_limit=300&show_qds_factors=0&show_results=0&status=Fixed,Re-Opened&show_reopened_info=1",
			"e29f7f80b96aef8f74787b900b5241b94422ab2c268c25829c3e5b13f2b69c76"},
		{"detections no qds", cfg, epDetection, "action=list&truncation_limit=0&show_qds=0&show_igs=1&vm_processed_after=2025-12-25",
			"9f4a205f16f16401d360c15c745c8fcb2331eccde27dd09db57d79d7233cc60d"},
		{"detections corpus off", noResults, epDetection, "action=list&truncation_limit=0&show_igs=1",
			"4d459f8398476a24e3e583f06d3eaa3dc7649581cb222fdcc7e100bf87bcc457"},
		{"host list None", cfg, epHostList, "action=list&details=None&truncation_limit=0",
			"f042b42f6843c2d5e0f25216cc6967cfb66df9a3c197f4ebc7bad12378c7dea9"},
		{"host list None ranges", ranges, epHostList, "action=list&details=None&truncation_limit=700",
			"123764385faa47d515742603c6d7f74f6f4dbb01a47800554c04dec878f9cc28"},
		{"host list Basic", cfg, epHostList, "action=list&details=Basic&truncation_limit=0",
			"2563a4031a457431bd6844f96b0bdf0292b6670bf1a8c3005b3602f330ee4edb"},
		{"host list All", cfg, epHostList, "action=list&details=All&truncation_limit=0",
			"5132efca3af005a32ba841027ab213d7b689328ecbdf4f614564c5c3064890bc"},
		{"host list default", cfg, epHostList, "action=list&truncation_limit=500&vm_processed_before=2025-12-30",
			"b98e8961f79cd5c299701f19d1d0f47e48652768994f0f61303ec53236ddf0e8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(tc.cfg)
			defer s.Close()
			sum := sha256.Sum256(generate(t, s, tc.ep, tc.form))
			if got := hex.EncodeToString(sum[:]); got != tc.want {
				t.Errorf("sha256 %s, want %s", got, tc.want)
			}
		})
	}
}
