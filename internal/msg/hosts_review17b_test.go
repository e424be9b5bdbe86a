package msg

import (
	"errors"
	"fmt"
	"testing"

	"github.com/qfetch/qfetch/internal/failure"
)

// A forged message of a few dozen bytes must not ask Qualys for more hosts
// than any configured batch holds (QFETCH_BATCH_SIZE is at most 10000):
// "1-1048575" would put a hundred batches' worth of hosts in one call and
// one object (design.md I7).
func TestDecodeRefusesMoreHostsThanABatch_review17b(t *testing.T) {
	tests := []struct {
		ids   string
		hosts int
		ok    bool
	}{
		{"1-10000", 10000, true},
		{"1-10001", 10001, false},
		{"1-1048575", 1048575, false},
		{"1-5000,20000-26000", 11001, false},
	}
	for _, tt := range tests {
		t.Run(tt.ids, func(t *testing.T) {
			data := fmt.Appendf(nil, `{"v":1,"run":"r","batch":1,"before":"2025-03-01T00:00:00Z","ids":%q,"hosts":%d}`, tt.ids, tt.hosts)
			b, err := Decode(data)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted a batch of %d hosts (%d bytes)", b.Hosts, len(data))
			}
			if !errors.Is(err, ErrBadBatch) || failure.ClassOf(err) != failure.ClassPermanent {
				t.Fatalf("error is not a permanent ErrBadBatch: %v", err)
			}
			if _, err := Encode(Batch{Run: "r", Number: 1, Before: testBefore, IDs: tt.ids, Hosts: tt.hosts}); err == nil {
				t.Fatal("Encode accepts it")
			}
		})
	}
}
