package serverproc

import (
	"errors"
	"io"
	"time"
)

// CONTRACT STUB (wave #19): the cluster helper replaces the bodies; the
// signatures below are what e2e, bench and testenv code against.

// NATSCluster is a JetStream cluster of nats-server processes on 127.0.0.1:
// each node has its own client, route and monitoring port and its own file
// store, all kept across Stop/Kill and Start, so a test can take nodes away
// mid-run and bring them back with their data.
type NATSCluster struct {
	Binary string
	Name   string // the cluster's name
	Nodes  []*NATSNode
}

// NATSNode is one server of a NATSCluster.
type NATSNode struct {
	Name        string // server name, e.g. "n1"
	ClientPort  int
	ClusterPort int
	MonitorPort int
	Dir         string // JetStream store directory
}

// ClusterOptions shape a cluster; zero values take the defaults.
type ClusterOptions struct {
	Nodes int       // default 3
	Echo  io.Writer // gets every node's output, prefixed with its name; nil: none
	// ExtraConfig is appended to every node's generated config file (for
	// accounts, TLS); empty: no auth, as the tests' single server.
	ExtraConfig string
}

// StartNATSCluster starts opts.Nodes nodes of binary under dir and returns
// once every node answers and JetStream has a meta leader. The caller must
// Stop it.
func StartNATSCluster(binary, dir string, opts ClusterOptions) (*NATSCluster, error) {
	return nil, errors.New("serverproc: NATSCluster not implemented yet")
}

// URLs is every node's client URL, comma-separated: what QFETCH_NATS_URL takes.
func (c *NATSCluster) URLs() string { return "" }

// URL is node i's client URL.
func (c *NATSCluster) URL(i int) string { return "" }

// Stop stops every running node gracefully and waits.
func (c *NATSCluster) Stop() error { return nil }

// StopNode stops node i gracefully (SIGTERM, lame duck) and waits for it.
func (c *NATSCluster) StopNode(i int) error { return nil }

// KillNode kills node i at once (SIGKILL), as a crash would, and waits.
func (c *NATSCluster) KillNode(i int) error { return nil }

// StartNode starts a stopped node again on its ports and store and waits
// until it answers its health check.
func (c *NATSCluster) StartNode(i int) error { return nil }

// Running reports whether node i's process is alive.
func (c *NATSCluster) Running(i int) bool { return false }

// PID is node i's process id while it runs; 0 otherwise.
func (c *NATSCluster) PID(i int) int { return 0 }

// Logs is the end of node i's output.
func (c *NATSCluster) Logs(i int) string { return "" }

// StreamLeader returns the index of the node that leads the named stream
// (a KV bucket's stream is "KV_<bucket>"), read from the monitoring
// endpoints (/jsz); an error if no running node reports a leader.
func (c *NATSCluster) StreamLeader(stream string) (int, error) { return -1, errors.New("not implemented") }

// MetaLeader returns the index of the JetStream meta leader.
func (c *NATSCluster) MetaLeader() (int, error) { return -1, errors.New("not implemented") }

// WaitStreamLeader waits up to timeout until the named stream has a
// leader and all its running replicas are current; it returns the leader.
func (c *NATSCluster) WaitStreamLeader(stream string, timeout time.Duration) (int, error) {
	return -1, errors.New("not implemented")
}

// WaitHealthy waits up to timeout until every running node's /healthz
// reports JetStream healthy (meta leader known, streams current).
func (c *NATSCluster) WaitHealthy(timeout time.Duration) error { return errors.New("not implemented") }

// StoreBytes is the bytes on disk under every node's store directory,
// summed (bench).
func (c *NATSCluster) StoreBytes() (int64, error) { return 0, errors.New("not implemented") }
