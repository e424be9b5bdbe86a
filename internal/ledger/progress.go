package ledger

import "strconv"

// Resolve picks, for every planned batch, the results that stand for it:
// its own, or (when it was split) its halves', recursively. missing names
// the first batch with neither.
func Resolve(planned int, results []BatchResult, splits []Split) (used []BatchResult, missing string) {
	r := newResolver(results, splits)
	for i := 1; i <= planned; i++ {
		if key := strconv.Itoa(i); !r.walk(key, 0) {
			return nil, key
		}
	}
	return r.used, ""
}

// Progress counts the planned batches that have results standing for them
// (a run's progress as completion sees it, so that status and completion
// never disagree) and returns the results that
// count: those standing for covered batches, and for an uncovered one those
// standing for its covered parts (its halves', recursively). A whole
// batch's result that its halves replace is left out, so hosts and bytes
// are not counted twice.
func Progress(planned int, results []BatchResult, splits []Split) (covered int, counted []BatchResult) {
	r := newResolver(results, splits)
	var partial func(key string, depth int)
	partial = func(key string, depth int) {
		if r.walk(key, depth) {
			return
		}
		if h, ok := r.halves[key]; ok && depth < 32 {
			partial(h[0], depth+1)
			partial(h[1], depth+1)
		}
	}
	for i := 1; i <= planned; i++ {
		key := strconv.Itoa(i)
		if r.walk(key, 0) {
			covered++
			continue
		}
		partial(key, 0)
	}
	return covered, r.used
}

type resolver struct {
	done   map[string]BatchResult
	halves map[string][2]string
	used   []BatchResult
}

func newResolver(results []BatchResult, splits []Split) *resolver {
	r := &resolver{done: make(map[string]BatchResult, len(results)), halves: make(map[string][2]string, len(splits))}
	for _, res := range results {
		r.done[res.Batch] = res
	}
	for _, s := range splits {
		r.halves[s.Batch] = s.Halves
	}
	return r
}

// walk reports whether key is covered and appends the results that cover it.
func (r *resolver) walk(key string, depth int) bool {
	// A split's halves are preferred; a result of the whole batch, recorded
	// by a redelivery that raced the split, stands in when they are not
	// both done.
	if h, ok := r.halves[key]; ok && depth < 32 {
		mark := len(r.used)
		if r.walk(h[0], depth+1) && r.walk(h[1], depth+1) {
			return true
		}
		r.used = r.used[:mark]
	}
	if res, ok := r.done[key]; ok {
		r.used = append(r.used, res)
		return true
	}
	return false
}
