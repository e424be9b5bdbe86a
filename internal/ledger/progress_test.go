package ledger

import (
	"slices"
	"testing"
)

// done is a result for each batch key.
func done(keys ...string) []BatchResult {
	var out []BatchResult
	for _, k := range keys {
		out = append(out, BatchResult{Batch: k})
	}
	return out
}

// split is the record of batch b split into halves h1 and h2.
func split(b, h1, h2 string) Split { return Split{Batch: b, Halves: [2]string{h1, h2}} }

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		planned int
		results []BatchResult
		splits  []Split
		used    []string
		missing string
	}{
		{"all done", 3, done("1", "2", "3"), nil, []string{"1", "2", "3"}, ""},
		{"one missing", 3, done("1", "3"), nil, nil, "2"},
		{"empty run", 0, nil, nil, nil, ""},
		{"split halves done", 2, done("1", "2.1", "2.2"), []Split{split("2", "2.1", "2.2")}, []string{"1", "2.1", "2.2"}, ""},
		{"split, one half missing", 2, done("1", "2.1"), []Split{split("2", "2.1", "2.2")}, nil, "2"},
		{"split twice", 1, done("1.1", "1.2.1", "1.2.2"),
			[]Split{split("1", "1.1", "1.2"), split("1.2", "1.2.1", "1.2.2")}, []string{"1.1", "1.2.1", "1.2.2"}, ""},
		{"whole result stands in for unfinished halves", 1, done("1", "1.1"), []Split{split("1", "1.1", "1.2")}, []string{"1"}, ""},
		{"halves preferred over a raced whole result", 1, done("1", "1.1", "1.2"), []Split{split("1", "1.1", "1.2")}, []string{"1.1", "1.2"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used, missing := Resolve(tt.planned, tt.results, tt.splits)
			var keys []string
			for _, r := range used {
				keys = append(keys, r.Batch)
			}
			if !slices.Equal(keys, tt.used) || missing != tt.missing {
				t.Fatalf("Resolve = %v, %q; want %v, %q", keys, missing, tt.used, tt.missing)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	tests := []struct {
		name    string
		planned int
		results []BatchResult
		splits  []Split
		covered int
		counted []string
	}{
		{"nothing done", 3, nil, nil, 0, nil},
		{"some done", 3, done("1", "3"), nil, 2, []string{"1", "3"}},
		{"one half of a split done", 2, done("1", "2.1"), []Split{split("2", "2.1", "2.2")}, 1, []string{"1", "2.1"}},
		{"whole and halves both done: halves only", 1, done("1", "1.1", "1.2"), []Split{split("1", "1.1", "1.2")}, 1, []string{"1.1", "1.2"}},
		{"whole and one half: the whole only", 1, done("1", "1.1"), []Split{split("1", "1.1", "1.2")}, 1, []string{"1"}},
		{"batch beyond those planned so far", 1, done("1", "2"), nil, 1, []string{"1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			covered, counted := Progress(tt.planned, tt.results, tt.splits)
			var keys []string
			for _, r := range counted {
				keys = append(keys, r.Batch)
			}
			slices.Sort(keys)
			if covered != tt.covered || !slices.Equal(keys, tt.counted) {
				t.Fatalf("Progress = %d, %v; want %d, %v", covered, keys, tt.covered, tt.counted)
			}
		})
	}
}
