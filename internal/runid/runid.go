// Package runid owns the syntax of run IDs: which strings can name a run,
// which kind of run (detection run or KnowledgeBase pass) an ID names, and
// how new ones are made.
package runid

import (
	crand "crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"time"
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

// timeLayout makes IDs sort by their time to the second, as strings.
const timeLayout = "20060102T150405Z"

// New makes a detection run ID for time t that sorts by time and does not
// collide: "20261204T120000Z-a1b2c3".
func New(t time.Time) string { return t.UTC().Format(timeLayout) + "-" + suffix() }

// NewKB makes a KnowledgeBase pass ID for time t: [KBPrefix] and the form
// of [New], so that KB passes sort by time among themselves.
func NewKB(t time.Time) string { return KBPrefix + New(t) }

// After returns an ID made by mk for t or a later second that sorts after
// last (a run opened in the same second as the newest one, a failed run
// retried at once, must still sort after it: planners scan newest first).
func After(mk func(time.Time) string, t time.Time, last string) string {
	id := mk(t)
	for last != "" && id <= last {
		t = t.Add(time.Second)
		id = mk(t)
	}
	return id
}

func suffix() string {
	var b [3]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
