// Package objstore names a run's objects and stores them whole or not at all,
// streamed with bounded memory, in S3-compatible storage or a local directory.
package objstore
