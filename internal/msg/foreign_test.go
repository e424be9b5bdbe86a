package msg

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestForeignSetting: each setting qfetch never sets is named, the first
// one found first; a stream without any is not refused.
func TestForeignSetting(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    jetstream.StreamConfig
		want string
	}{
		{"plain", jetstream.StreamConfig{Name: "S", Subjects: []string{"a.>"}}, ""},
		{"mirror", jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "X"}}, "mirror/sources"},
		{"sources", jetstream.StreamConfig{Sources: []*jetstream.StreamSource{{Name: "X"}}}, "mirror/sources"},
		{"republish", jetstream.StreamConfig{RePublish: &jetstream.RePublish{Source: ">", Destination: "x.>"}}, "republish"},
		{"transform", jetstream.StreamConfig{SubjectTransform: &jetstream.SubjectTransformConfig{Source: ">", Destination: "x.>"}}, "subject transform"},
		{"sealed", jetstream.StreamConfig{Sealed: true}, "sealed"},
		{"mirror before sealed", jetstream.StreamConfig{Mirror: &jetstream.StreamSource{Name: "X"}, Sealed: true}, "mirror/sources"},
	} {
		setting, _, _, found := ForeignSetting(tc.c)
		if setting != tc.want || found != (tc.want != "") {
			t.Errorf("%s: ForeignSetting = %q, %v; want %q", tc.name, setting, found, tc.want)
		}
	}
}
