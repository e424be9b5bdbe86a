package finish

import (
	"encoding/json"
	"testing"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
)

// TestObjectEncodings: one object record, two encodings that never change:
// the ledger's (every field) and the manifest's (sha256 and hosts left out
// when unknown or zero; the ETag in neither).
func TestObjectEncodings(t *testing.T) {
	tests := []struct {
		name     string
		obj      objstore.Object
		ledger   string
		manifest string
	}{
		{"full", objstore.Object{Key: "k", Bytes: 10, SHA256: "ab", Hosts: 3, ETag: "e"},
			`{"key":"k","bytes":10,"sha256":"ab","hosts":3}`, `[{"key":"k","bytes":10,"sha256":"ab","hosts":3}]`},
		{"no hosts", objstore.Object{Key: "k", Bytes: 10, SHA256: "ab"},
			`{"key":"k","bytes":10,"sha256":"ab","hosts":0}`, `[{"key":"k","bytes":10,"sha256":"ab"}]`},
		{"listed", objstore.Object{Key: "k", Bytes: 10, ETag: "e"},
			`{"key":"k","bytes":10,"sha256":"","hosts":0}`, `[{"key":"k","bytes":10}]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := json.Marshal(tt.obj); err != nil || string(b) != tt.ledger {
				t.Errorf("ledger encoding %s, %v; want %s", b, err, tt.ledger)
			}
			if b, err := json.Marshal(Objects{tt.obj}); err != nil || string(b) != tt.manifest {
				t.Errorf("manifest encoding %s, %v; want %s", b, err, tt.manifest)
			}
			// What either encoding wrote reads back as the record.
			var back objstore.Object
			if err := json.Unmarshal([]byte(tt.ledger), &back); err != nil || back.Key != tt.obj.Key || back.Hosts != tt.obj.Hosts {
				t.Errorf("decoding %s: %+v, %v", tt.ledger, back, err)
			}
		})
	}
	// An old batch result (written by msg.Object) decodes into the record.
	var r ledger.BatchResult
	old := `{"run":"r","batch":"1","hosts_requested":2,"hosts_returned":1,"objects":[{"key":"k","bytes":5,"sha256":"ab","hosts":1}],"delivery":1,"duration_seconds":0.5,"at":"2026-01-01T00:00:00Z"}`
	if err := json.Unmarshal([]byte(old), &r); err != nil || len(r.Objects) != 1 || r.Objects[0].Bytes != 5 || r.Objects[0].Hosts != 1 {
		t.Fatalf("old batch result: %+v, %v", r, err)
	}
	if b, _ := json.Marshal(r); string(b) != old {
		t.Errorf("batch result re-encoded as\n%s\nwant\n%s", b, old)
	}
	if b, _ := json.Marshal(Objects(nil)); string(b) != "null" {
		t.Errorf("no objects: %s", b)
	}
}
