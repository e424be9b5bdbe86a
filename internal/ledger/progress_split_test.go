package ledger

import (
	"slices"
	"testing"
)

// TestProgressNestedSplit: batch 1 was split into 1.1 and 1.2, and
// 1.2 again into 1.2.1 and 1.2.2. A redelivery of 1.2 raced its split and
// recorded a whole result for 1.2; both of 1.2's halves are done too; 1.1
// is not done yet, so batch 1 is not covered. 1.2's hosts and bytes must
// count once (its halves, as completion would prefer them), not twice.
func TestProgressNestedSplit(t *testing.T) {
	res := func(k string, hosts int) BatchResult {
		return BatchResult{Batch: k, HostsRequested: hosts}
	}
	results := []BatchResult{res("1.2", 50), res("1.2.1", 25), res("1.2.2", 25)}
	splits := []Split{
		{Batch: "1", Halves: [2]string{"1.1", "1.2"}},
		{Batch: "1.2", Halves: [2]string{"1.2.1", "1.2.2"}},
	}
	covered, counted := Progress(1, results, splits)
	var keys []string
	hosts := 0
	for _, r := range counted {
		keys = append(keys, r.Batch)
		hosts += r.HostsRequested
	}
	slices.Sort(keys)
	if covered != 0 || hosts != 50 {
		t.Fatalf("Progress = %d covered, counted %v (%d hosts requested); want 0 covered and 50 hosts (1.2 or its halves, once)", covered, keys, hosts)
	}
}
