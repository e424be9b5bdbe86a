package runstat

import (
	"encoding/json"
	"time"
)

// MarshalJSON writes an open window start (a run from the beginning) as
// null rather than as year 1, in `qfetch status --json`, `runs --json` and
// status.json alike.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status // without this method
	v := struct {
		plain
		// The shallower field hides plain's "after".
		After *time.Time `json:"after"`
	}{plain: plain(s)}
	if !s.After.IsZero() {
		v.After = &s.After
	}
	return json.Marshal(v)
}
