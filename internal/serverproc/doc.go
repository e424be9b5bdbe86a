// Package serverproc runs the pinned server binaries (bin/minio, bin/nats-server)
// as local child processes: it finds them, picks free loopback ports, and owns
// the life of a MinIO process and of a JetStream cluster of nats-servers
// (start, ready, stop, kill, restart, leaders, redacted output).
//
// It serves the tests (through internal/testenv) and the bench harness, and is
// kept free of package testing so that a main may import it.
package serverproc
