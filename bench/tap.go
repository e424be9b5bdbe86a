package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qfetch/qfetch/internal/msg"
)

// Kinds of NATS operation the tap tells apart, in report order.
const (
	opPublish  = "publish"  // a batch published on the stream's subjects
	opFetch    = "fetch"    // $JS.API.CONSUMER.MSG.NEXT: a pull request
	opAck      = "ack"      // $JS.ACK +ACK (or an empty body)
	opWPI      = "wpi"      // $JS.ACK +WPI: InProgress
	opNak      = "nak"      // $JS.ACK -NAK
	opTerm     = "term"     // $JS.ACK +TERM
	opKVWrite  = "kv-write" // $KV.<bucket>.<key>: put, create, update, delete
	opRead     = "read"     // $JS.API.DIRECT.GET / STREAM.MSG.GET: KV gets
	opAPIOther = "api"      // every other $JS.API request
	opTable    = "table"    // qfetch.table.*: a table job published per stored batch
	opDeliver  = "deliver"  // a stream message a consumer delivers (reply $JS.ACK…): batch pulls, KV watches
	opOther    = "other"    // anything else a client sends (flow control, …)
)

var opKinds = []string{opPublish, opFetch, opAck, opWPI, opNak, opTerm, opKVWrite, opRead, opAPIOther, opTable, opDeliver, opOther}

// tap counts NATS operations from outside qfetch: a plain subscriber on
// ">" sees every message clients publish in the account, JetStream API
// requests and acknowledgements included, and classifies it by subject
// (and, for acks, by body). Replies to inboxes are not operations and are
// not counted; the servers' own replication traffic lives in the system
// account and is not seen.
type tap struct {
	nc  *nats.Conn
	sub *nats.Subscription

	mu       sync.Mutex
	ops      map[string]int64
	detail   map[string]int64 // other API calls by verb, KV writes and reads by bucket
	firstAck time.Time
	lastAck  time.Time
	seen     int64 // every message the tap received, inboxes included
	ids      map[string]struct{}
}

func startTap(urls string) (*tap, error) {
	nc, err := nats.Connect(urls, nats.Name("qfetch-bench-tap"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	t := &tap{nc: nc, ops: map[string]int64{}, detail: map[string]int64{}, ids: map[string]struct{}{}}
	t.sub, err = nc.Subscribe(">", t.handle)
	if err == nil {
		// A tap that drops messages would under-count: no limit, and
		// Dropped is checked at the end.
		err = t.sub.SetPendingLimits(-1, -1)
	}
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("tap: %w", err)
	}
	return t, nil
}

func (t *tap) handle(m *nats.Msg) {
	kind, detail := classify(m.Subject, m.Reply, m.Data)
	if kind == opPublish || kind == opTable {
		// The same message id twice is a repeated publish (the stream
		// drops it as a duplicate).
		id := m.Header.Get("Nats-Msg-Id")
		t.mu.Lock()
		if _, ok := t.ids[id]; ok {
			t.detail[kind+" repeated id"]++
		}
		t.ids[id] = struct{}{}
		t.mu.Unlock()
	}
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen++
	if detail != "" {
		t.detail[detail]++
	}
	if kind == "" {
		return
	}
	t.ops[kind]++
	if kind == opAck {
		if t.firstAck.IsZero() {
			t.firstAck = now
		}
		t.lastAck = now
	}
}

var batchPrefix = msg.BatchSubject("")

// classify names the operation a message on subject is, "" for a reply to
// an inbox; detail is a finer name for some kinds. A consumer's delivery
// reaches the tap too (its inbox matches ">"), under the stored message's
// subject with an ack subject as reply: it is told apart by that reply.
func classify(subject, reply string, body []byte) (kind, detail string) {
	switch {
	case strings.HasPrefix(reply, "$JS.ACK."):
		if strings.HasPrefix(subject, "$KV.") {
			return opDeliver, "deliver " + kvKey(subject)
		}
		return opDeliver, "deliver " + firstTokens(subject, 2)
	case strings.HasPrefix(subject, "_INBOX."):
		return "", ""
	case strings.HasPrefix(subject, batchPrefix):
		return opPublish, ""
	case strings.HasPrefix(subject, "qfetch.table."):
		return opTable, ""
	case strings.HasPrefix(subject, "$JS.EVENT."):
		// The servers' advisories (API audit, consumer created and
		// deleted): not a client's operation; seen in the detail only.
		return "", "advisory " + firstTokens(strings.TrimPrefix(subject, "$JS.EVENT.ADVISORY."), 2)
	case strings.HasPrefix(subject, "$JS.API.CONSUMER.MSG.NEXT."):
		return opFetch, ""
	case strings.HasPrefix(subject, "$JS.ACK."):
		switch {
		case len(body) == 0 || bytes.HasPrefix(body, []byte("+ACK")):
			return opAck, ""
		case bytes.HasPrefix(body, []byte("+WPI")):
			return opWPI, ""
		case bytes.HasPrefix(body, []byte("-NAK")):
			return opNak, ""
		case bytes.HasPrefix(body, []byte("+TERM")):
			return opTerm, ""
		}
		return opOther, "ack " + string(body[:min(len(body), 8)])
	case strings.HasPrefix(subject, "$KV."):
		return opKVWrite, "kv-write " + kvKey(subject)
	case strings.HasPrefix(subject, "$JS.API.DIRECT.GET."), strings.HasPrefix(subject, "$JS.API.STREAM.MSG.GET."):
		rest := strings.TrimPrefix(strings.TrimPrefix(subject, "$JS.API.DIRECT.GET."), "$JS.API.STREAM.MSG.GET.")
		stream, key, _ := strings.Cut(rest, ".")
		if strings.HasPrefix(key, "$KV.") {
			// A direct get by subject names the key: its kind.
			return opRead, "read " + kvKey(key)
		}
		return opRead, "read " + stream
	case strings.HasPrefix(subject, "$JS.API."):
		return opAPIOther, "api " + apiVerb(strings.TrimPrefix(subject, "$JS.API."))
	}
	return opOther, "other " + firstTokens(subject, 3)
}

// kvKey names a KV subject ($KV.<bucket>.<key>) by bucket and the kind of
// key: the run ledger's keys are <run>, <run>.<kind>.<batch>…, so the
// token after the run says what is written (done, claim, fail, …).
func kvKey(subject string) string {
	parts := strings.Split(strings.TrimPrefix(subject, "$KV."), ".")
	switch {
	case len(parts) >= 3:
		return parts[0] + " <run>." + parts[2]
	case len(parts) == 2:
		return parts[0] + " <key>"
	}
	return parts[0]
}

// apiVerb is a JetStream API subject without its stream and consumer
// names: CONSUMER.CREATE, STREAM.INFO, …
func apiVerb(s string) string {
	parts := strings.Split(s, ".")
	if len(parts) >= 2 {
		return parts[0] + "." + parts[1]
	}
	return s
}

func firstTokens(s string, n int) string {
	parts := strings.SplitN(s, ".", n+1)
	return strings.Join(parts[:min(n, len(parts))], ".")
}

// tapCounts is what the tap saw between two snapshots.
type tapCounts struct {
	Ops      map[string]int64 `json:"ops"`
	Detail   map[string]int64 `json:"detail"`
	FirstAck time.Time        `json:"first_ack"`
	LastAck  time.Time        `json:"last_ack"`
	Seen     int64            `json:"seen"`
	Dropped  int              `json:"dropped"`
}

// reset starts a new count.
func (t *tap) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ops, t.detail, t.ids = map[string]int64{}, map[string]int64{}, map[string]struct{}{}
	t.firstAck, t.lastAck, t.seen = time.Time{}, time.Time{}, 0
}

// counts flushes (so that what was published before is in) and returns the
// counts so far.
func (t *tap) counts() tapCounts {
	_ = t.nc.Flush()
	dropped, _ := t.sub.Dropped()
	t.mu.Lock()
	defer t.mu.Unlock()
	return tapCounts{Ops: maps.Clone(t.ops), Detail: maps.Clone(t.detail), FirstAck: t.firstAck, LastAck: t.lastAck,
		Seen: t.seen, Dropped: dropped}
}

func (t *tap) close() {
	if t != nil && t.nc != nil {
		t.nc.Close()
	}
}

// topDetail is the n largest detail counts as "name count/batch".
func (c tapCounts) topDetail(n int, batches int) string {
	keys := slices.Collect(maps.Keys(c.Detail))
	slices.SortFunc(keys, func(a, b string) int {
		if d := c.Detail[b] - c.Detail[a]; d != 0 {
			if d > 0 {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	var out []string
	for _, k := range keys[:min(n, len(keys))] {
		out = append(out, fmt.Sprintf("%s %.2f", k, float64(c.Detail[k])/float64(batches)))
	}
	return strings.Join(out, ", ")
}
