package msg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/runid"
)

// The analyst tables' conversions travel apart from the batches: their own
// work-queue stream and consumer, so that a conversion never holds one of
// the fleet's Qualys slots (MaxAckPending of the workers consumer, I5) and a
// backlog of conversions never delays a fetch (I9).
const (
	StreamTables   = "QFETCH_TABLES"
	ConsumerTables = "tables"

	tableSubjectPrefix = "qfetch.table."
	tableSubjects      = tableSubjectPrefix + ">"
)

// Table job kinds: the table a job writes a part of.
const (
	TableDetections = "detections"
	TableHosts      = "hosts"
	// TableKB is the kb table: one part per KnowledgeBase batch of a KB
	// pass (its item is the batch key).
	TableKB = "kb"
)

// TableJobVersion is the table job message version this code writes.
const TableJobVersion = 1

// maxTableJobBytes bounds a job message: {v, run, kind, item} takes well
// under 200 bytes.
const maxTableJobBytes = 1024

// maxPageDigits bounds a Host List page number (a subject and KV token).
const maxPageDigits = 9

// ErrBadTableJob is wrapped by every Encode/Decode failure of a table job,
// classified permanent.
var ErrBadTableJob = errors.New("bad table job")

// TableJob is one conversion: the part of table Kind built from Item of run
// Run. It carries nothing else: what to convert comes from the ledger.
type TableJob struct {
	V    int    `json:"v"`
	Run  string `json:"run"`
	Kind string `json:"kind"`
	// Item is the batch key ([Batch.Key]: "17", "17.2.1") of a detections
	// or kb job, or the Host List page number ("1") of a hosts job.
	Item string `json:"item"`
}

// Subject is qfetch.table.<run>.
func (j TableJob) Subject() string { return tableSubjectPrefix + j.Run }

// MsgID is <run>.<kind>.<item>: a job published twice inside the duplicate
// window is stored once.
func (j TableJob) MsgID() string { return j.Run + "." + j.Kind + "." + j.Item }

// Validate reports what is wrong with j, wrapping [ErrBadTableJob],
// classified permanent.
func (j TableJob) Validate() error {
	var problems []string
	if !ValidRunID(j.Run) {
		problems = append(problems, fmt.Sprintf("run %q is not 1-64 letters, digits, '-' or '_'", clip(j.Run, 80)))
	}
	// A KnowledgeBase pass has kb table parts only, a detection run none:
	// the run's ID says which it is (runid.IsKB), so a job naming the other
	// table is forged or garbled.
	kb := runid.IsKB(j.Run)
	switch j.Kind {
	case TableDetections, TableKB:
		if !ValidBatchKey(j.Item) || strings.Count(j.Item, ".") > maxSplitDepth {
			problems = append(problems, fmt.Sprintf("item %q is not a batch key like 17 or 17.1.2", clip(j.Item, 80)))
		}
	case TableHosts:
		if !ValidPageItem(j.Item) {
			problems = append(problems, fmt.Sprintf("item %q is not a Host List page number", clip(j.Item, 80)))
		}
	default:
		problems = append(problems, fmt.Sprintf("kind %q is none of %s, %s, %s", clip(j.Kind, 40), TableDetections, TableHosts, TableKB))
	}
	switch {
	case kb && (j.Kind == TableDetections || j.Kind == TableHosts):
		problems = append(problems, fmt.Sprintf("a %s job on KnowledgeBase pass %s", j.Kind, clip(j.Run, 80)))
	case !kb && j.Kind == TableKB:
		problems = append(problems, fmt.Sprintf("a %s job on run %s, which is no KnowledgeBase pass", j.Kind, clip(j.Run, 80)))
	}
	if len(problems) > 0 {
		return failure.Permanent(fmt.Errorf("%w: %s", ErrBadTableJob, strings.Join(problems, "; ")))
	}
	return nil
}

// ValidPageItem reports whether s is a page number as a hosts job names
// it: 1 and up, no leading zero.
func ValidPageItem(s string) bool {
	if s == "" || len(s) > maxPageDigits || s[0] == '0' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// EncodeTableJob sets the version and returns the message body.
func EncodeTableJob(j TableJob) ([]byte, error) {
	j.V = TableJobVersion
	if err := j.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// DecodeTableJob parses a job message strictly: a garbled body, an unknown
// field or version, or an invalid job is an error wrapping
// [ErrBadTableJob], classified permanent.
func DecodeTableJob(data []byte) (TableJob, error) {
	if len(data) > maxTableJobBytes {
		return TableJob{}, failure.Permanent(fmt.Errorf("%w: message is %d bytes, a job takes at most %d",
			ErrBadTableJob, len(data), maxTableJobBytes))
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	var j TableJob
	if err := dec.Decode(&j); err != nil {
		return TableJob{}, failure.Permanent(fmt.Errorf("%w: %w", ErrBadTableJob, err))
	}
	if dec.More() {
		return TableJob{}, failure.Permanent(fmt.Errorf("%w: trailing data after the job", ErrBadTableJob))
	}
	if j.V != TableJobVersion {
		return TableJob{}, failure.Permanent(fmt.Errorf("%w: unknown version %d (this build reads %d)",
			ErrBadTableJob, j.V, TableJobVersion))
	}
	if err := j.Validate(); err != nil {
		return TableJob{}, err
	}
	return j, nil
}

// TablesConfig tunes the tables stream and consumer; zero fields take the
// defaults.
type TablesConfig struct {
	// Replicas of the stream and consumer; default 1.
	Replicas int
	// MaxAckPending bounds the conversions running fleet-wide; default 64.
	MaxAckPending int
	// AckWait is how long a conversion may go without an ack or a
	// progress signal; default 2m.
	AckWait time.Duration
	// DuplicateWindow is how long a job's Msg-Id is remembered; default 6h.
	DuplicateWindow time.Duration
	// AdoptConsumer binds to the consumer without creating it or changing
	// its settings (processes that only publish).
	AdoptConsumer bool
	// KeepStreams creates a missing stream but changes no existing one.
	KeepStreams bool
}

// Defaults of [TablesConfig].
const (
	DefaultTablesMaxAckPending = 64
	DefaultTablesAckWait       = 2 * time.Minute
)

func (c TablesConfig) withDefaults() TablesConfig {
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = DefaultTablesMaxAckPending
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultTablesAckWait
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	return c
}

func (c TablesConfig) validate() error {
	var errs []error
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("stream replicas must be between 1 and 5, got %d", c.Replicas))
	}
	if c.MaxAckPending < 1 {
		errs = append(errs, fmt.Errorf("tables max ack pending must be at least 1, got %d", c.MaxAckPending))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("tables ack wait must be at least 1s, got %s", c.AckWait))
	}
	if c.DuplicateWindow < time.Second {
		errs = append(errs, fmt.Errorf("tables duplicate window must be at least 1s, got %s", c.DuplicateWindow))
	}
	return errors.Join(errs...)
}

func wantedTables(c TablesConfig) (jetstream.StreamConfig, jetstream.ConsumerConfig) {
	return jetstream.StreamConfig{
			Name:        StreamTables,
			Description: "qfetch: analyst table conversions waiting for a worker",
			Subjects:    []string{tableSubjects},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
			Duplicates:  c.DuplicateWindow,
			MaxMsgSize:  maxTableJobBytes,
			Discard:     jetstream.DiscardNew,
		}, jetstream.ConsumerConfig{
			Durable:       ConsumerTables,
			Description:   "qfetch: workers' table loops share this pull consumer",
			FilterSubject: tableSubjects,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       c.AckWait,
			// Workers Term a job after TableMaxDeliveries with a logged
			// reason; the server's own limit would drop it silently.
			MaxDeliver:    -1,
			MaxAckPending: c.MaxAckPending,
			Replicas:      c.Replicas,
		}
}

// TableQueue is the tables stream and its consumer. It is safe for
// concurrent use.
type TableQueue struct {
	js  jetstream.JetStream
	cfg TablesConfig

	mu       sync.Mutex
	consumer jetstream.Consumer
}

// SetupTables creates (or checks and adopts) the tables stream and, unless
// cfg.AdoptConsumer, its consumer. Several processes may call it at once.
func SetupTables(ctx context.Context, js jetstream.JetStream, cfg TablesConfig) (*TableQueue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, failure.Permanent(fmt.Errorf("msg: invalid tables config: %w", err))
	}
	sc, cc := wantedTables(cfg)
	if err := ensureStream(ctx, js, sc, cfg.KeepStreams); err != nil {
		return nil, err
	}
	q := &TableQueue{js: js, cfg: cfg}
	if cfg.AdoptConsumer {
		return q, nil
	}
	c, err := js.CreateOrUpdateConsumer(ctx, StreamTables, cc)
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: create consumer %s on %s: %w", ConsumerTables, StreamTables, err))
	}
	q.consumer = c
	return q, nil
}

// OpenTables binds to the tables stream without creating anything (for
// operator commands that publish jobs); the consumer is bound on first use.
func OpenTables(ctx context.Context, js jetstream.JetStream) (*TableQueue, error) {
	if _, err := js.Stream(ctx, StreamTables); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, failure.FleetWide(fmt.Errorf("msg: stream %s: %w (%w)", StreamTables, ErrNotSetUp, err))
		}
		return nil, ClassifyAPI(fmt.Errorf("msg: stream %s: %w", StreamTables, err))
	}
	return &TableQueue{js: js, cfg: TablesConfig{}.withDefaults()}, nil
}

// Config returns the configuration in force, defaults filled in.
func (q *TableQueue) Config() TablesConfig { return q.cfg }

func (q *TableQueue) tables(ctx context.Context) (jetstream.Consumer, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.consumer != nil {
		return q.consumer, nil
	}
	c, err := q.js.Consumer(ctx, StreamTables, ConsumerTables)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, failure.Retryable(fmt.Errorf("msg: consumer %s: %w: no worker has created it yet (%w)", ConsumerTables, ErrNotSetUp, err))
	}
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: read consumer %s: %w", ConsumerTables, err))
	}
	q.consumer = c
	return c, nil
}

// PublishTableJob publishes one conversion, Msg-Id <run>.<kind>.<item>,
// waiting for its ack.
func (q *TableQueue) PublishTableJob(ctx context.Context, run, kind, item string) error {
	j := TableJob{Run: run, Kind: kind, Item: item}
	data, err := EncodeTableJob(j)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: j.Subject(), Data: data}
	if _, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(j.MsgID()), jetstream.WithExpectStream(StreamTables)); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: publish table job %s: %w", j.MsgID(), err))
	}
	return nil
}

// NextTableJob pulls one job, waiting up to maxWait; nil and no error when
// none came.
func (q *TableQueue) NextTableJob(ctx context.Context, maxWait time.Duration) (*TableDelivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	c, err := q.tables(ctx)
	if err != nil {
		return nil, err
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(max(maxWait, 100*time.Millisecond)))
	if err != nil {
		return nil, ClassifyAPI(fmt.Errorf("msg: fetch table job: %w", err))
	}
	var got *TableDelivery
	for m := range batch.Messages() {
		got = &TableDelivery{m: m}
	}
	if got == nil {
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, ClassifyAPI(fmt.Errorf("msg: fetch table job: %w", err))
		}
	}
	return got, nil
}

// TablesPending is how many jobs of run are in the stream ("" for all):
// queued or delivered and not yet acked.
func (q *TableQueue) TablesPending(ctx context.Context, run string) (uint64, error) {
	filter := tableSubjects
	if run != "" {
		if err := checkRun(run); err != nil {
			return 0, err
		}
		filter = tableSubjectPrefix + run
	}
	s, err := q.js.Stream(ctx, StreamTables)
	if err != nil {
		return 0, ClassifyAPI(fmt.Errorf("msg: tables pending: %w", err))
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, ClassifyAPI(fmt.Errorf("msg: tables pending: %w", err))
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n, nil
}

// TableDelivery is one delivered table job.
type TableDelivery struct {
	m jetstream.Msg
}

// Job decodes the job and checks it was published on its own run's
// subject: a job on another run's subject is refused, so that a right to
// publish for one run converts nothing of another.
func (d *TableDelivery) Job() (TableJob, error) {
	j, err := DecodeTableJob(d.m.Data())
	if err != nil {
		return TableJob{}, err
	}
	if d.m.Subject() != j.Subject() {
		return TableJob{}, failure.Permanent(fmt.Errorf("%w: job for run %s arrived on %s", ErrBadTableJob, j.Run, clip(d.m.Subject(), 100)))
	}
	return j, nil
}

// Subject is where the job was published.
func (d *TableDelivery) Subject() string { return d.m.Subject() }

// Deliveries is how many times the job was delivered, this one included.
func (d *TableDelivery) Deliveries() uint64 {
	if md, err := d.m.Metadata(); err == nil && md.NumDelivered > 0 {
		return md.NumDelivered
	}
	return 1
}

// Ack ends the job, waiting for the server to confirm.
func (d *TableDelivery) Ack(ctx context.Context) error {
	if err := d.m.DoubleAck(ctx); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: ack table job: %w", err))
	}
	return nil
}

// Retry hands the job back to be delivered again after delay.
func (d *TableDelivery) Retry(delay time.Duration) error {
	if err := d.m.NakWithDelay(delay); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: nak table job: %w", err))
	}
	return nil
}

// Term ends the job for good with reason (kept short in the advisory).
func (d *TableDelivery) Term(reason string) error {
	if len(reason) > maxTermReason {
		reason = reason[:maxTermReason]
	}
	if err := d.m.TermWithReason(reason); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: terminate table job: %w", err))
	}
	return nil
}

// InProgress renews the job's lease.
func (d *TableDelivery) InProgress() error { return d.m.InProgress() }

// TableRetryDelay is the pause before delivery n+1 of a failed
// conversion: 5s doubling to a 5m cap, ±20% jitter.
func TableRetryDelay(n uint64) time.Duration {
	d := 5 * time.Second << min(max(n, 1)-1, 6)
	d = min(d, 5*time.Minute)
	jitter := time.Duration(rand.Int64N(int64(d)*2/5+1)) - d/5
	return d + jitter
}

// PageItem is the item of page n's hosts job.
func PageItem(n int) string { return strconv.Itoa(n) }
