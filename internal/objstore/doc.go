// Package objstore names a run's objects and stores them whole or not at all, streamed
// with bounded memory, in S3 or a directory, through uploads a successor can abort (I8).
package objstore
