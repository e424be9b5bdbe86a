// Package msg is qfetch's JetStream layer: the batch stream and its consumer,
// the dead-letter stream, the run-record and state buckets, and their schemas.
//
// It knows nothing of Qualys or object storage: a batch carries host IDs and
// request parameters as opaque values, and a batch result names objects by
// key. [Setup] creates (or checks) everything once per process; the planner
// publishes with a [Publisher], workers pull with [Queue.Fetch] and act on the
// returned messages, and completion code decides with [Queue.UpdateRun].
package msg
