package e2e

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/qfetch/qfetch/internal/serverproc"
	"github.com/qfetch/qfetch/internal/testenv"
)

// startCluster starts a three-node JetStream cluster of the pinned
// nats-server for the test; it is stopped when the test ends, and each
// node's output is shown if the test failed.
func startCluster(t *testing.T) *serverproc.NATSCluster {
	t.Helper()
	c, err := serverproc.StartNATSCluster(testenv.NATSBinary(t), filepath.Join(t.TempDir(), "cluster"), serverproc.ClusterOptions{})
	if err != nil {
		t.Fatalf("three-node NATS cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range c.Nodes {
				t.Logf("--- nats node %s log (end):\n%s", c.Nodes[i].Name, c.Logs(i))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the NATS cluster: %v", err)
		}
	})
	return c
}

// clusterScenarios run on a three-node JetStream cluster (newClusterWorld).
var clusterScenarios = []scenario{
	{"c1_stream_leader_killed", testClusterLeaderKilled},
	{"c2_rolling_restart", testClusterRollingRestart},
	{"c3_planner_killed_kv_leader_down", testClusterPlannerKVLeaderDown},
	{"c4_quorum_lost", testClusterQuorumLoss},
}

// TestE2ECluster runs the cluster scenarios after TestE2E, two at a time:
// each has three nats-servers, a simulator and several workers of its own.
func TestE2ECluster(t *testing.T) {
	b := buildBinaries(t, t.TempDir())
	var wg sync.WaitGroup
	slots := make(chan struct{}, 2)
	for _, sc := range clusterScenarios {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			t.Run(sc.name, func(t *testing.T) { sc.run(t, b) })
		})
	}
	wg.Wait()
}
