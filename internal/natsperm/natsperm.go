// Package natsperm owns what each qfetch role may do in NATS: the subjects a
// planner, worker, exporter and operator may publish and subscribe to, and
// the nats-server authorization config rendered from them.
//
// It is the one source of those rights: the tests run a real server with
// them and the prod overlay ships the config rendered here. It also names
// a refusal: the error NATS sends when a role steps outside its rights.
package natsperm

import (
	"fmt"
	"slices"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
)

// Role is a kind of qfetch process holding its own NATS credentials.
type Role string

// The roles, each with its own NATS user.
const (
	Planner  Role = "planner"
	Worker   Role = "worker"
	Exporter Role = "exporter"
	Operator Role = "operator" // the qfetch CLI's operator commands
)

// Roles are every role, in the order the config lists them.
var Roles = []Role{Planner, Worker, Exporter, Operator}

// Permissions are a role's allow lists; everything else is refused.
type Permissions struct {
	Publish   []string
	Subscribe []string
}

// Inbox is where JetStream answers and pull deliveries arrive. Nobody
// publishes into it but the server, so no role can forge an answer; every
// role may read it (see the package README note in For).
const Inbox = "_INBOX.>"

const (
	api = "$JS.API."
	// The JetStream objects, by stream name (a KV bucket B is stream KV_B).
	batches  = msg.StreamBatches
	dlq      = msg.StreamDLQ
	kvRuns   = "KV_" + ledger.BucketRuns
	kvState  = "KV_" + ledger.BucketState
	kvLocks  = "KV_" + ledger.BucketLocks
	kvFleet  = "KV_" + ledger.BucketFleet
	consumer = msg.ConsumerWorkers
	tables   = msg.StreamTables

	batchSubjects = "qfetch.batch.>"
	retrySubjects = "qfetch.retry.>"
	dlqSubjects   = "qfetch.dlq.>"
	tableSubjects = "qfetch.table.>"
)

// The status writer's lock has a bucket of its own: lock buckets allow
// roll-ups, so the workers and the exporter hold no right on the one of
// the planner lock.
const kvStatusLock = "KV_" + ledger.BucketStatusLock

var (
	streams = []string{batches, dlq, tables}
	buckets = []string{kvRuns, kvState, kvLocks, kvFleet, kvStatusLock}
)

// For returns role's permissions. It panics on an unknown role: the roles
// are this package's constants.
//
// What the subjects allow, in words (README "Security" takes it from here):
//
//   - every role: read the stream, bucket and consumer information it binds
//     to and the account's JetStream limits, and receive JetStream's answers
//     in _INBOX.
//   - planner: create and update the streams and buckets (it alone: it
//     owns their settings); publish batches; read the queue's counts; read
//     and write run records and Host List page records; advance the
//     watermark over completed runs (plan.Advancer) and the KB watermark
//     over completed KnowledgeBase passes (it alone); hold the planner lock;
//     read the fleet state and the dead letters; publish table jobs (its
//     finisher queues a sealed run's Host List pages).
//   - worker: bind to the streams and buckets (never create or change
//     them: it waits for the planner); create and tune the workers consumer
//     (it owns the fleet cap, I5) and pull, ack, nak and extend its
//     batches; publish split halves, retry schedules and dead letters;
//     write batch records (claims, results, splits, failure counts,
//     drained) and run records (the finisher); never the watermark (NATS
//     cannot tell a compare-and-set advance from a set); write the fleet
//     state and probe; hold the status-writer lock (its status reporter),
//     in its own bucket: no right on QFETCH_LOCKS, whose roll-ups would
//     reach the planner lock; create and pull the tables consumer, publish
//     table jobs and write table part records (its table loop and
//     finisher).
//   - exporter: bind to the streams and buckets (never create or change
//     them); read everything; write only the status-writer lock.
//   - operator: read everything; replay and drop dead letters (publish a
//     batch, delete a dead letter); write run records, the watermark, the
//     fleet state and locks. Never
//     create, update, purge or delete a stream, bucket or consumer.
func For(role Role) Permissions {
	var p perms
	// Binding: every role reads what it binds to.
	for _, s := range slices.Concat(streams, buckets) {
		p.pub(api + "STREAM.INFO." + s)
	}
	p.pub(api + "CONSUMER.INFO." + batches + "." + consumer)
	// The account's JetStream limits: creating a bucket reads them.
	p.pub(api + "INFO")
	p.sub(Inbox)
	switch role {
	case Planner:
		p.create(true)
		p.pub(batchSubjects)
		p.pub(readQueue...)
		p.pub(readStream(dlq)...)
		p.readKV(kvRuns, kvState, kvLocks, kvFleet)
		p.pub(kvRun, kvPage, kvWatermark, kvKBWatermark, kvLock("planner"))
		p.pub(tableSubjects) // its finisher queues the Host List pages' conversions
	case Worker:
		p.pub(api+"CONSUMER.CREATE."+batches+"."+consumer, api+"CONSUMER.CREATE."+batches+"."+consumer+".>",
			api+"CONSUMER.MSG.NEXT."+batches+"."+consumer, "$JS.ACK."+batches+"."+consumer+".>")
		p.pub(batchSubjects, retrySubjects, dlqSubjects)
		p.pub(readQueue...)
		p.pub(readStream(dlq)...)
		p.readKV(kvRuns, kvState, kvLocks, kvFleet, kvStatusLock)
		// The table loop: its own consumer, jobs and part records.
		p.pub(api+"CONSUMER.CREATE."+tables+"."+msg.ConsumerTables, api+"CONSUMER.CREATE."+tables+"."+msg.ConsumerTables+".>",
			api+"CONSUMER.INFO."+tables+"."+msg.ConsumerTables,
			api+"CONSUMER.MSG.NEXT."+tables+"."+msg.ConsumerTables, "$JS.ACK."+tables+"."+msg.ConsumerTables+".>")
		p.pub(tableSubjects, kvBatchRecords("table"))
		p.pub(kvRun, kvBatchRecords("done"), kvBatchRecords("claim"), kvBatchRecords("split"),
			kvBatchRecords("fail"), kvBatchRecords("drained"),
			kvStatusWriter, kvFleetKeys)
	case Exporter:
		p.pub(readQueue...)
		p.pub(readStream(dlq)...)
		p.readKV(kvRuns, kvState, kvLocks, kvFleet, kvStatusLock)
		p.pub(kvStatusWriter)
	case Operator:
		p.pub(readQueue...)
		p.pub(readStream(dlq)...)
		p.pub(api + "STREAM.MSG.DELETE." + dlq)
		p.pub(batchSubjects)
		p.readKV(kvRuns, kvState, kvLocks, kvFleet, kvStatusLock)
		p.pub("$KV."+ledger.BucketRuns+".>", kvWatermark, "$KV."+ledger.BucketLocks+".>", kvFleetKeys,
			"$KV."+ledger.BucketStatusLock+".>")
	default:
		panic(fmt.Sprintf("natsperm: unknown role %q", role))
	}
	return p.done()
}

// KV keys each role writes (see ledger's key layout in runs.go).
var (
	kvRun       = "$KV." + ledger.BucketRuns + ".*" // the run record: <run>
	kvPage      = "$KV." + ledger.BucketRuns + ".*.page.*"
	kvWatermark = "$KV." + ledger.BucketState + ".watermark"
	// kvKBWatermark is the KnowledgeBase watermark: the planner's alone,
	// an operator's too being out: no command sets it, and the periodic
	// full pass (QFETCH_KB_FULL_EVERY) repairs what a bad one would skip.
	kvKBWatermark = "$KV." + ledger.BucketState + ".kb-watermark"
	kvFleetKeys   = "$KV." + ledger.BucketFleet + ".*" // fleet and probe
)

// kvStatusWriter is the one key of QFETCH_STATUS_LOCK.
var kvStatusWriter = "$KV." + ledger.BucketStatusLock + "." + ledger.StatusWriterLock

func kvBatchRecords(kind string) string { return "$KV." + ledger.BucketRuns + ".*." + kind + ".>" }

func kvLock(name string) string { return "$KV." + ledger.BucketLocks + "." + name }

// readQueue reads the batch stream's counts and a message by sequence or
// subject (how many batches a run has left, whether a retry is scheduled).
// No consumer may be created on it: that subject would also update the
// workers consumer.
var readQueue = []string{api + "STREAM.MSG.GET." + batches}

// readStream reads a stream through ordered consumers of its own (the
// dead-letter listing): create, pull and delete those.
func readStream(stream string) []string {
	return []string{
		api + "STREAM.MSG.GET." + stream,
		api + "DIRECT.GET." + stream, api + "DIRECT.GET." + stream + ".>",
		api + "CONSUMER.CREATE." + stream + ".>",
		api + "CONSUMER.INFO." + stream + ".*",
		api + "CONSUMER.MSG.NEXT." + stream + ".*",
		api + "CONSUMER.DELETE." + stream + ".*",
		"$JS.FC." + stream + ".>",
	}
}

type perms struct{ Permissions }

func (p *perms) pub(subjects ...string) { p.Publish = append(p.Publish, subjects...) }
func (p *perms) sub(subjects ...string) { p.Subscribe = append(p.Subscribe, subjects...) }

// create allows creating the streams and buckets, and with update changing
// their settings too.
func (p *perms) create(update bool) {
	for _, s := range slices.Concat(streams, buckets) {
		p.pub(api + "STREAM.CREATE." + s)
		if update {
			p.pub(api + "STREAM.UPDATE." + s)
		}
	}
}

// readKV reads buckets: get, list, watch and history (ordered consumers).
func (p *perms) readKV(streams ...string) {
	for _, s := range streams {
		p.pub(readStream(s)...)
	}
}

func (p *perms) done() Permissions {
	out := Permissions{Publish: slices.Clone(p.Publish), Subscribe: slices.Clone(p.Subscribe)}
	slices.Sort(out.Publish)
	slices.Sort(out.Subscribe)
	out.Publish = slices.Compact(out.Publish)
	out.Subscribe = slices.Compact(out.Subscribe)
	return out
}
