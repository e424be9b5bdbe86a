package msg

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/qparams"
	"github.com/qfetch/qfetch/internal/runid"
)

// SchemaVersion is the newest batch message version this code writes:
// version 2 added Kind, and only KnowledgeBase batches are written in it;
// detection batches are still written as version 1 (see [Batch.version]),
// so that a build without KnowledgeBase support keeps fetching them.
//
// Batches wait in the stream across deploys, so a bump ships in two releases:
// the first only adds the new version to [decoders], the second writes it,
// and a version's decoder stays while its messages can still be queued. Each
// released version keeps an encoded message in testdata/batch-v<N>.json that
// the tests decode. A version this build has no decoder for is refused as
// permanent: guessing at a newer schema could fetch the wrong hosts.
const SchemaVersion = 2

// detectionVersion is the version detection batches are written in.
const detectionVersion = 1

// decoders reads each schema version this build accepts into today's Batch.
// A previous version's entry maps its fields onto the current ones.
var decoders = map[int]func(data []byte) (Batch, error){
	1: decodeV1,
	2: decodeV2,
}

// decodeV1 reads version 1: Batch's own JSON without Kind. A version 1
// message naming a kind was not written by qfetch: a build that only read
// version 1 would have fetched its QIDs as host IDs.
func decodeV1(data []byte) (Batch, error) {
	var b Batch
	if err := json.Unmarshal(data, &b); err != nil {
		return b, err
	}
	if b.Kind != "" {
		return b, fmt.Errorf("kind %q in a version 1 message: version 1 has no kind (a KnowledgeBase batch is version 2)", show(b.Kind))
	}
	return b, nil
}

// decodeV2 reads version 2, the current version: Batch's own JSON.
func decodeV2(data []byte) (Batch, error) {
	var b Batch
	err := json.Unmarshal(data, &b)
	return b, err
}

// version is the schema version b is written in: 2 for a KnowledgeBase
// batch, 1 for a detection batch, whose bytes stay as every release wrote
// them.
func (b Batch) version() int {
	if b.Kind == "" {
		return detectionVersion
	}
	return SchemaVersion
}

// show bounds a string from outside for an error message.
func show(s string) string {
	const most = 20
	if len(s) > most {
		return s[:most] + "…"
	}
	return s
}

// readVersions lists the versions in [decoders], for an error message.
func readVersions() string {
	vs := slices.Sorted(maps.Keys(decoders))
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strconv.Itoa(v)
	}
	return strings.Join(out, ", ")
}

// MaxBatchBytes bounds a batch message, well below the server's max
// payload (1 MiB by default), so that a batch always fits whole in its
// dead-letter record, and its split halves and retries fit the stream. The
// largest batch the configuration allows, 10000 hosts of 20-digit IDs,
// takes about 210 KB. [Publisher.Publish] refuses a larger batch and
// Decode refuses a larger message.
const MaxBatchBytes = 256 << 10

// MaxBatchHosts is the most hosts a batch holds, QFETCH_BATCH_SIZE's upper
// limit: a message naming more was not planned by qfetch, and would put
// many batches' worth of hosts in one call and one object (design.md I7).
const MaxBatchHosts = 10000

// ErrBadBatch is wrapped by every Encode/Decode failure; the error is also
// classified permanent, since no redelivery can fix a message.
var ErrBadBatch = errors.New("bad batch message")

// Batch is one unit of work: the hosts one detection request covers, or
// the QIDs one KnowledgeBase request covers (Kind). It is the JSON body of
// a message on qfetch.batch.<run>.
type Batch struct {
	// V is the schema version; Encode sets it.
	V int `json:"v"`
	// Run is the run ID: letters, digits, '-' and '_' (it is a subject token
	// and a KV key token).
	Run string `json:"run"`
	// Number is the planner's batch number, from 1.
	Number int `json:"batch"`
	// Part is empty for a batch as planned. When a poison batch is split,
	// each half gets its parent's Part plus ".1" or ".2" (as "1", "2", "1.2"
	// …), so that batch 17 becomes 17.1 and 17.2; see [Batch.Key].
	Part string `json:"part,omitempty"`
	// After and Before are the run's window, [After, Before). A zero After
	// means from the beginning.
	After  time.Time `json:"after"`
	Before time.Time `json:"before"`
	// IDs are the host IDs in the strict form of [hostids.Parse] (the Qualys
	// ids parameter: ascending IDs and a-b ranges, comma-separated).
	IDs string `json:"ids"`
	// Hosts is the number of hosts IDs holds; Decode checks it.
	Hosts int `json:"hosts"`
	// Params are the extra detection request parameters of the run: only
	// names qparams allows for detections, checked by Encode and Decode.
	Params url.Values `json:"params,omitempty"`
	// Kind is empty for a detection batch and [KindKB] for a KnowledgeBase
	// batch, whose IDs are QIDs, whose Run is a KB pass (runid.IsKB), whose
	// After is the pass's last_modified_after (zero for a full pass) and
	// whose Params are KnowledgeBase parameters (qparams.CheckKB). A KB
	// batch is written as schema version 2, so that a build that cannot
	// fetch it refuses it instead of asking for detections of hosts whose
	// IDs are QIDs.
	Kind string `json:"kind,omitempty"`
}

// KindKB is the Kind of a KnowledgeBase batch.
const KindKB = "kb"

var partPattern = regexp.MustCompile(`^[12](\.[12])*$`)

// maxSplitDepth bounds Part: 2^20 halves is far below a single host.
const maxSplitDepth = 20

// Key identifies the batch within its run: "17" as planned, "17.1", "17.2.1"
// for split halves. It is the tail of the Msg-Id and of the done key.
func (b Batch) Key() string {
	k := strconv.Itoa(b.Number)
	if b.Part != "" {
		k += "." + b.Part
	}
	return k
}

// Subject is where the batch is published: qfetch.batch.<run>.
func (b Batch) Subject() string { return BatchSubject(b.Run) }

// MsgID is the batch's Nats-Msg-Id, <run>.<key>, which makes a republished
// batch a duplicate JetStream drops (I3).
func (b Batch) MsgID() string { return MsgID(b.Run, b.Key()) }

// BatchSubject is the subject of a run's batches.
func BatchSubject(run string) string { return batchSubjectPrefix + run }

// MsgID is the Nats-Msg-Id of batch key (see [Batch.Key]) in run.
func MsgID(run, key string) string { return run + "." + key }

// ValidRunID reports whether id can name a run (a subject and KV key token).
func ValidRunID(id string) bool { return runid.Valid(id) }

// Validate reports what is wrong with b, as an error wrapping [ErrBadBatch]
// and classified permanent. The version is not checked: Encode sets it.
// The kind and the run must agree (a KnowledgeBase batch belongs to a KB
// pass, a detection batch to a run: runid.IsKB), and Params must be ones
// the kind's API allows, so that no message turns one kind of request into
// the other (design.md I7).
func (b Batch) Validate() error {
	var problems []string
	if b.Run == "" {
		problems = append(problems, "missing run")
	} else if !ValidRunID(b.Run) {
		problems = append(problems, fmt.Sprintf("run %q is not 1-64 letters, digits, '-' or '_'", b.Run))
	}
	checkParams := qparams.CheckDetection
	switch b.Kind {
	case "":
		if runid.IsKB(b.Run) {
			problems = append(problems, fmt.Sprintf("run %s is a KnowledgeBase pass but the batch is a detection batch", b.Run))
		}
	case KindKB:
		checkParams = qparams.CheckKB
		if b.Run != "" && !runid.IsKB(b.Run) {
			problems = append(problems, fmt.Sprintf("run %s is not a KnowledgeBase pass (%s…) but the batch is a KnowledgeBase batch", b.Run, runid.KBPrefix))
		}
	default:
		problems = append(problems, fmt.Sprintf("unknown kind %q", show(b.Kind)))
	}
	if b.Number < 1 {
		problems = append(problems, fmt.Sprintf("batch number %d is not positive", b.Number))
	}
	if b.Part != "" && (!partPattern.MatchString(b.Part) || strings.Count(b.Part, ".") >= maxSplitDepth) {
		problems = append(problems, fmt.Sprintf("part %q is not a split path like 1.2", b.Part))
	}
	if b.Before.IsZero() {
		problems = append(problems, "missing window end (before)")
	} else if !b.After.IsZero() && !b.After.Before(b.Before) {
		problems = append(problems, fmt.Sprintf("window [%s, %s) is empty",
			b.After.Format(time.RFC3339), b.Before.Format(time.RFC3339)))
	}
	if ids, err := b.hostSet(); err != nil {
		problems = append(problems, err.Error())
	} else if ids.Len() != b.Hosts {
		problems = append(problems, fmt.Sprintf("hosts is %d but IDs hold %d", b.Hosts, ids.Len()))
	} else if b.Hosts > MaxBatchHosts {
		problems = append(problems, fmt.Sprintf("%d hosts, a batch holds at most %d", b.Hosts, MaxBatchHosts))
	}
	// A worker must send nothing the planner's configuration could not
	// hold: Params come from outside the worker (design.md I7).
	perr := checkParams(b.Params)
	switch {
	case perr != nil && len(problems) > 0:
		return failure.Permanent(fmt.Errorf("%w: %s; %w", ErrBadBatch, strings.Join(problems, "; "), perr))
	case perr != nil:
		return failure.Permanent(fmt.Errorf("%w: %w", ErrBadBatch, perr))
	case len(problems) > 0:
		return failure.Permanent(fmt.Errorf("%w: %s", ErrBadBatch, strings.Join(problems, "; ")))
	}
	return nil
}

// Encode sets the schema version (see [Batch.version]) and returns the
// message body, or a permanent error when b is not a valid batch.
func Encode(b Batch) ([]byte, error) {
	b.V = b.version()
	if err := b.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, failure.Permanent(fmt.Errorf("%w: %w", ErrBadBatch, err))
	}
	return data, nil
}

// Decode parses a message body of any version in [decoders]; the batch's V
// is the version it was written in. A garbled or oversized body, an unknown
// version or an invalid batch (Params included: see package qparams) is an
// error wrapping [ErrBadBatch], classified permanent, that says what is
// wrong.
func Decode(data []byte) (Batch, error) {
	if len(data) > MaxBatchBytes {
		// No publisher of ours writes it; parsing it would only cost.
		return Batch{}, failure.Permanent(fmt.Errorf("%w: message is %d bytes, a batch takes at most %d",
			ErrBadBatch, len(data), MaxBatchBytes))
	}
	var head struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return Batch{}, failure.Permanent(fmt.Errorf("%w: not JSON: %w", ErrBadBatch, err))
	}
	if head.V == nil {
		return Batch{}, failure.Permanent(fmt.Errorf("%w: missing schema version", ErrBadBatch))
	}
	decode, ok := decoders[*head.V]
	if !ok {
		return Batch{}, failure.Permanent(fmt.Errorf("%w: unknown schema version %d (this build reads %s)",
			ErrBadBatch, *head.V, readVersions()))
	}
	b, err := decode(data)
	if err != nil {
		return Batch{}, failure.Permanent(fmt.Errorf("%w: version %d: %w", ErrBadBatch, *head.V, err))
	}
	b.V = *head.V
	if err := b.Validate(); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// Split halves a batch that cannot be fetched whole: the first half holds
// the first Hosts/2 hosts. Halves of the same batch are always the same, so
// their Msg-Ids dedupe when a split is repeated. A single-host batch cannot
// be split.
func (b Batch) Split() (Batch, Batch, error) {
	ids, err := b.hostSet()
	if err != nil {
		return Batch{}, Batch{}, failure.Permanent(fmt.Errorf("%w: %w", ErrBadBatch, err))
	}
	n := ids.Len()
	if n < 2 {
		return Batch{}, Batch{}, failure.Permanent(fmt.Errorf("msg: batch %s has %d host, it cannot be split", b.Key(), n))
	}
	if strings.Count(b.Part, ".")+1 >= maxSplitDepth {
		return Batch{}, Batch{}, failure.Permanent(fmt.Errorf("msg: batch %s is split %d times already", b.Key(), maxSplitDepth))
	}
	first, second := b, b
	first.Params, second.Params = cloneValues(b.Params), cloneValues(b.Params)
	head, tail := ids.Split(n / 2)
	first.IDs, second.IDs = head.String(), tail.String()
	first.Hosts, second.Hosts = n/2, n-n/2
	first.Part, second.Part = childPart(b.Part, "1"), childPart(b.Part, "2")
	return first, second, nil
}

// hostSet parses IDs; a batch, unlike a set, is never empty.
func (b Batch) hostSet() (hostids.Set, error) {
	ids, err := hostids.Parse(b.IDs)
	if err == nil && ids.Len() == 0 {
		err = errors.New("no host IDs")
	}
	return ids, err
}

func childPart(parent, half string) string {
	if parent == "" {
		return half
	}
	return parent + "." + half
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
