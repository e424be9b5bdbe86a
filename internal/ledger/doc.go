// Package ledger is qfetch's run ledger in JetStream KV: runs and their one
// state vocabulary, batch claims and results, splits, failure counts,
// drained batches, Host List pages, progress, the watermark, locks, and the
// fleet's shared state (pause, hold, failure streak, probe lease: see
// [Fleet]). Claims and the run record's planner pass fence every write into
// a run (see [Ledger.TakeBatch], [Ledger.UpdatePlanned]).
//
// It knows nothing of Qualys or object storage, and nothing of how batches
// travel (that is package msg): it records what planners, workers and
// finishers decided. [Setup] creates (or brings to its settings) the
// ledger's buckets; [Open] binds to them without creating anything, for
// operator commands.
package ledger
