package runstat

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStatusJSONOpenWindow: a window from the beginning has a null start,
// and the JSON reads back into the same Status.
func TestStatusJSONOpenWindow(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		after time.Time
		want  string
	}{
		{time.Time{}, `"after":null`},
		{at, `"after":"2026-01-02T03:04:05Z"`},
	} {
		s := Status{Run: "r1", After: tc.after, Before: at.Add(time.Hour), Bytes: 7}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), tc.want) || strings.Count(string(b), `"after"`) != 1 || !strings.Contains(string(b), `"bytes":7`) {
			t.Errorf("after %v: %s, want %s once", tc.after, b, tc.want)
		}
		var back Status
		if err := json.Unmarshal(b, &back); err != nil || !back.After.Equal(tc.after) || back.Run != "r1" || back.Bytes != 7 {
			t.Errorf("after %v: read back %+v (%v)", tc.after, back, err)
		}
	}
}
