// Package msg is qfetch's JetStream transport: the batch stream and its
// consumer, the batch message schema, publish, consume, retries, and dead letters.
//
// It knows nothing of Qualys, object storage or what a run's state is (that
// is package ledger): a batch carries host IDs and request parameters as
// opaque values. [Setup] creates (or checks) the streams and the consumer
// once per process; the planner publishes with a [Publisher], workers pull
// with [Queue.Fetch] and act on the returned messages: Ack, [Queue.Retry]
// (a scheduled re-delivery that frees the slot), or [Queue.DeadLetter].
package msg
