// Package e2e runs qfetch as separate processes (planner, workers, nats-server,
// MinIO, the simulator) under faults, and checks each bucket against the truth.
//
// Everything is in its tests; see scenarios_test.go for the list.
package e2e
