package objstore

import (
	"strings"
	"testing"
)

// TestValidPrefix (#17.10): the one rule for a configured prefix.
func TestValidPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"", true}, {"qualys", true}, {"vm/qualys", true}, {"a.b/c..d", true}, {"é/ü", true},
		{strings.Repeat("p", MaxKeyLen-PrefixReserve), true},
		{".qualys", false}, {"data/.raw", false}, {"a\tb", false}, {"a\x7f", false}, {"\xff", false},
		{"/a", false}, {"a/", false}, {"a//b", false}, {".", false}, {"a/../b", false},
		{strings.Repeat("p", MaxKeyLen-PrefixReserve+1), false},
	} {
		if err := ValidPrefix(tc.prefix); (err == nil) != tc.ok {
			t.Errorf("ValidPrefix(%.40q) = %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}

// FuzzValidPrefix: every prefix ValidPrefix accepts makes valid keys, the
// longest qfetch builds included.
func FuzzValidPrefix(f *testing.F) {
	for _, s := range []string{"qualys", "a/b", ".x", "a\tb", strings.Repeat("p", 768)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, prefix string) {
		if ValidPrefix(prefix) != nil {
			return
		}
		run := strings.Repeat("r", 64)
		part := strings.Repeat("2.", 16) + "1"
		for _, key := range []string{
			DetectionPartKey(prefix, run, 1<<40, part, 1<<20),
			HostListPageKey(prefix, run, 1<<40), ManifestKey(prefix, run), LatestKey(prefix),
		} {
			if err := ValidKey(key); err != nil {
				t.Fatalf("prefix %q accepted, key invalid: %v", prefix, err)
			}
		}
	})
}
