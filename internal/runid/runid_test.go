package runid

import (
	"strings"
	"testing"
	"time"
)

func TestValidAndKind(t *testing.T) {
	for _, tc := range []struct {
		id        string
		valid, kb bool
	}{
		{"20261204T120000Z-a1b2c3", true, false},
		{"kb-20261204T120000Z-a1b2c3", true, true},
		{"", false, false},
		{"a.b", false, false},
		{"kb", true, false},
	} {
		if got := Valid(tc.id); got != tc.valid {
			t.Errorf("Valid(%q) = %v, want %v", tc.id, got, tc.valid)
		}
		if got := IsKB(tc.id); got != tc.kb {
			t.Errorf("IsKB(%q) = %v, want %v", tc.id, got, tc.kb)
		}
	}
}

func TestNew(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.FixedZone("x", 3600))
	for _, tc := range []struct {
		id     string
		prefix string
		kb     bool
	}{
		{New(at), "20261204T110000Z-", false},
		{NewKB(at), "kb-20261204T110000Z-", true},
	} {
		if !strings.HasPrefix(tc.id, tc.prefix) || len(tc.id) != len(tc.prefix)+6 {
			t.Errorf("id %q, want %q and 6 hex digits", tc.id, tc.prefix)
		}
		if !Valid(tc.id) || IsKB(tc.id) != tc.kb {
			t.Errorf("id %q: valid %v, kb %v", tc.id, Valid(tc.id), IsKB(tc.id))
		}
	}
}

func TestAfter(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	last := "kb-20261204T120001Z-ffffff"
	id := After(NewKB, at, last)
	if id <= last || !strings.HasPrefix(id, "kb-20261204T120002Z-") {
		t.Errorf("After(%q) = %q, want one second past it", last, id)
	}
	if id := After(New, at, ""); !strings.HasPrefix(id, "20261204T120000Z-") {
		t.Errorf("After with no last = %q", id)
	}
}
