package objstore

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/qfetch/qfetch/internal/failure"
)

// The object layout of design.md. Every key is a pure function of (prefix,
// run, kind, number, page), so a redelivered batch lands on its own key (I3).
//
// The prefix has its surrounding slashes trimmed; an empty prefix gives keys
// with no leading slash. The run is used as it is: an empty or malformed run
// makes a key that [ValidKey] (and so every Put) rejects.

// A KnowledgeBase pass is a run whose ID starts with kbRunPrefix (package
// runid's KBPrefix; objstore keeps its own copy to stay a leaf, and a test
// checks they agree). Its objects live under <prefix>/kb/<pass>/: its QID
// listing in qids/ where a run's Host List pages are, its KnowledgeBase
// answers in vulns/ where a run's detections are.
const kbRunPrefix = "kb-"

func isKB(run string) bool { return strings.HasPrefix(run, kbRunPrefix) }

// HostListPageKey is <prefix>/runs/<run>/hostlist/page-000001.xml, and
// <prefix>/kb/<pass>/qids/page-000001.xml for a KnowledgeBase pass.
func HostListPageKey(prefix, run string, page int) string {
	dir := "hostlist/"
	if isKB(run) {
		dir = "qids/"
	}
	return RunPrefix(prefix, run) + dir + "page-" + seq(page, 6) + ".xml"
}

// itemDir is the folder of a run's batch answers.
func itemDir(run string) string {
	if isKB(run) {
		return "vulns/"
	}
	return "detections/"
}

// DetectionKey is <prefix>/runs/<run>/detections/batch-000001.xml for the
// first page of a batch's response, and batch-000001-p0002.xml for page 2
// onwards (a truncated response). A page below 2 means the first page.
//
// Batches sort in number order, but within one batch the -pNNNN pages sort
// before the first page ('-' < '.'); readers that want pages in order sort
// them by the number in the name.
func DetectionKey(prefix, run string, batch, page int) string {
	name := "batch-" + seq(batch, 6)
	if page >= 2 {
		name += "-p" + seq(page, 4)
	}
	return RunPrefix(prefix, run) + itemDir(run) + name + ".xml"
}

// DetectionPartKey is DetectionKey for a half of a split batch: part is the
// batch's split path ("1", "2.1"), giving batch-000017.2.1.xml (and
// batch-000017.2.1-p0002.xml …); an empty part is DetectionKey.
func DetectionPartKey(prefix, run string, batch int, part string, page int) string {
	if part == "" {
		return DetectionKey(prefix, run, batch, page)
	}
	name := "batch-" + seq(batch, 6) + "." + part
	if page >= 2 {
		name += "-p" + seq(page, 4)
	}
	return RunPrefix(prefix, run) + itemDir(run) + name + ".xml"
}

// ManifestKey is <prefix>/runs/<run>/manifest.json.
func ManifestKey(prefix, run string) string { return RunPrefix(prefix, run) + "manifest.json" }

// SuccessKey is <prefix>/runs/<run>/_SUCCESS, written last.
func SuccessKey(prefix, run string) string { return RunPrefix(prefix, run) + "_SUCCESS" }

// StatusKey is <prefix>/runs/<run>/status.json.
func StatusKey(prefix, run string) string { return RunPrefix(prefix, run) + "status.json" }

// LatestKey is <prefix>/latest.json.
func LatestKey(prefix string) string { return join(prefix, "latest.json") }

// KBLatestKey is <prefix>/kb/latest.json: the newest complete KnowledgeBase
// pass, as latest.json is the newest complete run.
func KBLatestKey(prefix string) string { return join(prefix, "kb/latest.json") }

// RunPrefix is <prefix>/runs/<run>/, with the trailing slash, so that listing
// run "r1" does not also list run "r10"; <prefix>/kb/<pass>/ for a
// KnowledgeBase pass.
func RunPrefix(prefix, run string) string {
	if isKB(run) {
		return join(prefix, "kb/"+run+"/")
	}
	return join(prefix, "runs/"+run+"/")
}

func join(prefix, rest string) string {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return rest
	}
	return prefix + "/" + rest
}

// seq formats n zero-padded to width digits. A number too wide for the field
// gets one letter first saying how many digits it has beyond width ('a' for
// one more, 'b' for two, …): letters sort after digits, so keys keep their
// numeric order past 999999 (batch-999999 < batch-a1000000 < batch-b10000000).
// A negative n is a caller's bug and panics: no key can hold it.
func seq(n, width int) string {
	if n < 0 {
		panic(fmt.Sprintf("objstore: negative sequence number %d in an object key", n))
	}
	s := strconv.Itoa(n)
	if extra := len(s) - width; extra > 0 {
		return string(rune('a'+extra-1)) + s
	}
	return strings.Repeat("0", width-len(s)) + s
}

// MaxKeyLen is the longest key S3 accepts, in bytes.
const MaxKeyLen = 1024

// ErrInvalidKey is wrapped by the error of any call given a key that
// [ValidKey] rejects. Its class is permanent: retrying cannot fix a key.
var ErrInvalidKey = errors.New("invalid object key")

// ValidKey reports whether key is one both stores accept, so that a key that
// works in the local directory also works in S3 and the other way round:
// non-empty, at most [MaxKeyLen] bytes, and a valid path ([checkPath]).
func ValidKey(key string) error {
	if err := validKey(key); err != nil {
		return failure.Permanent(fmt.Errorf("%w %q: %s", ErrInvalidKey, key, err))
	}
	return nil
}

func validKey(key string) error {
	switch {
	case key == "":
		return errors.New("empty")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("longer than %d bytes", MaxKeyLen)
	}
	return checkPath(key)
}

// PrefixReserve is what a prefix leaves of [MaxKeyLen] for the keys under
// it: "/runs/" + a 64-byte run ID + the longest object name, a split
// batch's included, with room to spare.
const PrefixReserve = 256

// ValidPrefix is the one rule for the key prefix an operator configures
// (QFETCH_S3_PREFIX; config.Load applies it at start, so a bad prefix stops
// the binary with exit 2 instead of making every key invalid and every
// batch a dead letter, #17.10): "" (keys at the bucket's root) or a path
// every key below passes [ValidKey] with — the same [checkPath], and at
// most MaxKeyLen - [PrefixReserve] bytes. Its errors say what the prefix
// must be, without quoting it.
func ValidPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if len(prefix) > MaxKeyLen-PrefixReserve {
		return fmt.Errorf("must be at most %d bytes, leaving room for the keys under it", MaxKeyLen-PrefixReserve)
	}
	return checkPath(prefix)
}

// checkPath is the rule keys and prefixes share: UTF-8 without control
// characters, '/'-separated segments that are neither empty nor start with
// '.' (no leading, trailing or double slash, no "." or "..", no hidden
// names, which the directory store keeps for its temporary files).
func checkPath(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("must be UTF-8")
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return errors.New("must not hold a control character")
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		switch {
		case seg == "":
			return errors.New("must be path segments joined by '/', with no leading, trailing or double '/'")
		case seg == "." || seg == "..":
			return fmt.Errorf("must not contain %q segments", seg)
		case seg[0] == '.':
			return errors.New(`must not have a segment starting with "." (hidden names are the directory store's temporary files)`)
		}
	}
	return nil
}

// validPrefix accepts what List may be given: "" for everything, or the start
// of a valid key, which may end with a slash.
func validPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := validKey(strings.TrimSuffix(prefix, "/")); err != nil {
		return failure.Permanent(fmt.Errorf("%w prefix %q: %s", ErrInvalidKey, prefix, err))
	}
	return nil
}
