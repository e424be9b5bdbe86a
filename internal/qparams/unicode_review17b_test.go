package qparams

import (
	"net/url"
	"testing"
)

// TestLookalikeNamesRefused_review17b: names that fold or normalise to an
// owned or allowed one (dotless i, long s, Kelvin sign, fullwidth letters,
// a trailing NUL or space, a percent-encoded name left encoded) are refused:
// the allowlist matches exactly, whatever Qualys' own folding would do.
func TestLookalikeNamesRefused_review17b(t *testing.T) {
	for _, name := range []string{"ıds", "İDS", "idſ", "\u212aqids", "ｓｔａｔｕｓ", "status\x00", "status ",
		"st%61tus", "ACTİON", "id_mın", "Status"} {
		if err := CheckDetection(url.Values{name: {"1"}}); err == nil {
			t.Errorf("%q accepted", name)
		}
	}
}
