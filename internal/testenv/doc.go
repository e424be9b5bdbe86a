// Package testenv gives tests the project's real moving parts: an embedded
// NATS JetStream server, the nats-server and MinIO binaries, a TCP proxy
// that partitions them, and a way to wait.
//
// It is imported only from _test.go files. A package whose tests call MinIO
// declares func TestMain(m *testing.M) { testenv.Main(m) }, so that the MinIO
// process shared by the package's tests is stopped when they end. Waiting in
// tests goes through Eventually, never through time.Sleep.
package testenv
