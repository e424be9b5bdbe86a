package msg

import (
	"fmt"
	"strings"

	"github.com/qfetch/qfetch/internal/failure"
)

// ValidBatchKey reports whether k is a batch key as [Batch.Key] makes them:
// a batch number without leading zeros, then the split parts ("17", "17.1.2").
func ValidBatchKey(k string) bool {
	num, part, _ := strings.Cut(k, ".")
	if num == "" || num[0] == '0' {
		return false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return false
		}
	}
	return part == "" || partPattern.MatchString(part)
}

// checkRun refuses a run ID that cannot be a subject token.
func checkRun(run string) error {
	if !ValidRunID(run) {
		return failure.Permanent(fmt.Errorf("msg: run ID %q is not 1-64 letters, digits, '-' or '_'", run))
	}
	return nil
}
