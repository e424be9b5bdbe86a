package runid

import "testing"

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
