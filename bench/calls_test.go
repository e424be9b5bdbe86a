package main

import (
	"math"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/msg"
)

var t0 = time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

func span(from, to float64) call { return call{Start: at(from), End: at(to), IDs: "1"} }

func TestFirstAtLeast(t *testing.T) {
	tests := []struct {
		name  string
		calls []call
		from  float64
		n     int
		want  float64 // -1: never
	}{
		{"two overlap after from", []call{span(1, 3), span(2, 4)}, 0, 2, 2},
		{"already two at from", []call{span(1, 3), span(2, 4)}, 2.5, 2, 2.5},
		{"back to back is one at a time", []call{span(1, 2), span(2, 3)}, 0, 2, -1},
		{"calls ended before from do not count", []call{span(0, 1), span(0, 1), span(5, 6)}, 2, 2, -1},
		{"three needed", []call{span(1, 5), span(2, 5), span(3, 5)}, 0, 3, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := firstAtLeast(tt.calls, at(tt.from), tt.n)
			if tt.want < 0 {
				if ok {
					t.Fatalf("got %v, want none", got.Sub(t0))
				}
				return
			}
			if !ok || !got.Equal(at(tt.want)) {
				t.Fatalf("got %v (%v), want %vs", got.Sub(t0), ok, tt.want)
			}
		})
	}
}

func TestQueuedUtil(t *testing.T) {
	sample := func(s float64, queued uint64) queueSample {
		return queueSample{At: at(s), QueueState: msg.QueueState{Queued: queued}}
	}
	tests := []struct {
		name      string
		calls     []call
		samples   []queueSample
		c         int
		util      float64
		queuedFor float64
	}{
		{
			name:    "both slots busy while queued; the idle tail is not queued",
			calls:   []call{span(0, 2), span(0, 2), span(2, 3)},
			samples: []queueSample{sample(0.1, 2), sample(1, 1), sample(2, 0), sample(3, 0)},
			c:       2, util: 1, queuedFor: 2,
		},
		{
			name:    "one slot idle while a batch is queued",
			calls:   []call{span(0, 2)},
			samples: []queueSample{sample(0, 1), sample(2, 0)},
			c:       2, util: 0.5, queuedFor: 2,
		},
		{
			name:    "a retry queued late counts only its own tick",
			calls:   []call{span(0, 1), span(0, 1), span(5, 6)},
			samples: []queueSample{sample(0, 1), sample(1, 0), sample(5, 1), sample(6, 0)},
			c:       2, util: 0.75, queuedFor: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := watchedRun{published: t0, calls: tt.calls, samples: tt.samples}
			util, secs := w.queuedUtil(tt.c)
			if math.Abs(util-tt.util) > 1e-9 || math.Abs(secs-tt.queuedFor) > 1e-9 {
				t.Fatalf("got utilisation %v over %v s, want %v over %v s", util, secs, tt.util, tt.queuedFor)
			}
		})
	}
}
