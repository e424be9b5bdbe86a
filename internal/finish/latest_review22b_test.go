package finish

import (
	"log/slog"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
)

// TestReview22bLatestNeverBackWhateverTheFinisherClock: runs take their
// window from the planner's clock; any worker of the fleet may finish a
// run, and runs finish out of order when one outlasts the cron period.
// Since 3e9e908 the finisher's own clock decides whether the latest.json
// it reads is "too far in the future": a worker whose clock is more than a
// day behind (NTP gone, a VM resumed from a snapshot) takes the newer run
// that a correct finisher recorded for a forged one and points latest.json
// back at its older run. README: "never back to an older one". Before the
// change no finisher's clock mattered here.
func TestReview22bLatestNeverBackWhateverTheFinisherClock(t *testing.T) {
	// The clock of the finisher of the newer run, which is right.
	right := newer.Before.Add(10 * time.Minute)
	cases := []struct {
		name string
		skew time.Duration // of the older run's finisher's clock
	}{
		{"same clock", 0},
		{"a day ahead", 48 * time.Hour},
		{"an hour behind", -time.Hour},
		{"25 hours behind", -25 * time.Hour},
		{"two days behind", -48 * time.Hour},
	}
	for _, st := range latestStores {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				store := st.open(t)
				key := objstore.LatestKey(latestPrefix)
				finisherAt := func(now time.Time) *Finisher {
					return New(Config{Prefix: latestPrefix, Owner: "test", Now: func() time.Time { return now }},
						nil, store, slog.New(slog.DiscardHandler))
				}
				if err := finisherAt(right).updateLatest(t.Context(), key, newer); err != nil {
					t.Fatal(err)
				}
				if err := finisherAt(right.Add(tc.skew)).updateLatest(t.Context(), key, older); err != nil {
					t.Fatal(err)
				}
				if got, _ := readLatest(t, store, key); got.Run != newer.Run {
					t.Errorf("latest.json names %s (window ends %s), want the newer run %s (window ends %s): moved back",
						got.Run, got.Before, newer.Run, newer.Before)
				}
			})
		}
	}
}
