package msg

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

func kbBatch() Batch {
	return Batch{Kind: KindKB, Run: "kb-20261204T120000Z-a1b2c3", Number: 2,
		Before: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), IDs: "38170,38173-38175", Hosts: 4}
}

// TestKBBatchVersion: a KnowledgeBase batch is written as version 2 and
// reads back whole; split halves keep their kind.
func TestKBBatchVersion(t *testing.T) {
	b := kbBatch()
	data, err := Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.V != 2 || got.Kind != KindKB || got.IDs != b.IDs || !got.After.IsZero() {
		t.Fatalf("decoded %+v", got)
	}
	first, second, err := got.Split()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []Batch{first, second} {
		if data, err := Encode(h); err != nil {
			t.Errorf("half %s: %v", h.Key(), err)
		} else if d, err := Decode(data); err != nil || d.V != 2 || d.Kind != KindKB {
			t.Errorf("half %s decoded %+v, %v", h.Key(), d, err)
		}
	}
}

// TestForgedKinds: a message whose kind and run disagree, a version 1
// message naming a kind, an unknown kind, or KnowledgeBase parameters qfetch
// owns, are refused as permanent: no message turns a detection request into
// a KnowledgeBase one or the other way round.
func TestForgedKinds(t *testing.T) {
	det := testBatch("20261204T120000Z-a1b2c3", 3)
	tests := []struct {
		name string
		b    Batch
		v    int // the version written into the message; 0: Encode's
		want string
		// valid is set when the batch itself is fine and only the
		// message's version is forged.
		valid bool
	}{
		{"kb batch on a run", func() Batch { b := kbBatch(); b.Run = "20261204T120000Z-a1b2c3"; return b }(), 0, "is not a KnowledgeBase pass", false},
		{"detection batch on a kb pass", func() Batch { b := det; b.Run = "kb-20261204T120000Z-a1b2c3"; return b }(), 0, "is a KnowledgeBase pass", false},
		{"detection batch on a kb pass, version 2", func() Batch { b := det; b.Run = "kb-20261204T120000Z-a1b2c3"; return b }(), 2, "is a KnowledgeBase pass", false},
		{"version 1 with kind kb", kbBatch(), 1, "version 1 has no kind", true},
		{"unknown kind", func() Batch { b := kbBatch(); b.Kind = "hosts"; return b }(), 2, `unknown kind "hosts"`, false},
		{"kb batch asking for ids", func() Batch { b := kbBatch(); b.Params = url.Values{"ids": {"1-999999"}}; return b }(), 0, "ids", false},
		{"kb batch with last_modified_after", func() Batch {
			b := kbBatch()
			b.Params = url.Values{"last_modified_after": {"2000-01-01"}}
			return b
		}(), 0, "last_modified_after", false},
		{"kb batch of too many QIDs", func() Batch { b := kbBatch(); b.IDs, b.Hosts = "1-10001", 10001; return b }(), 0, "at most 10000", false},
		{"kb batch without before", func() Batch { b := kbBatch(); b.Before = time.Time{}; return b }(), 0, "missing window end", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused := func(err error) bool {
				return errors.Is(err, ErrBadBatch) && failure.ClassOf(err) == failure.ClassPermanent &&
					strings.Contains(err.Error(), tt.want)
			}
			if _, err := Encode(tt.b); tt.valid && err != nil {
				t.Errorf("Encode: %v", err)
			} else if !tt.valid && !refused(err) {
				t.Errorf("Encode: want a permanent ErrBadBatch naming %q, got %v", tt.want, err)
			}
			v := tt.v
			if v == 0 {
				v = tt.b.version()
			}
			if _, err := Decode(forge(t, tt.b, v)); !refused(err) {
				t.Errorf("Decode: want a permanent ErrBadBatch naming %q, got %v", tt.want, err)
			}
		})
	}
}

// forge writes b as version v without Encode's checks, as a hostile or
// older publisher could.
func forge(t *testing.T, b Batch, v int) []byte {
	t.Helper()
	b.V = v
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
