// Package runid owns the syntax of run IDs: which strings can name a run,
// and which kind of run (detection run or KnowledgeBase pass) an ID names.
package runid

import (
	"regexp"
	"strings"
)

// KBPrefix starts the ID of every KnowledgeBase pass ("kb-20261204T120000Z-a1b2c3").
// The kind is in the ID, not only in the record, so that object keys stay a
// pure function of the ID (I3) and a detection run can never be named as a
// KB pass or the other way round.
const KBPrefix = "kb-"

var pattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Valid reports whether id can name a run: 1-64 letters, digits, '-' or
// '_', since it is a NATS subject token and a KV key token.
func Valid(id string) bool { return pattern.MatchString(id) }

// IsKB reports whether id names a KnowledgeBase pass.
func IsKB(id string) bool { return strings.HasPrefix(id, KBPrefix) }
