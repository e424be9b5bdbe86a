package serverproc

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// natsBinary finds bin/nats-server as testenv does (testenv imports this
// package, so an internal test cannot use it): missing is a failure under
// CI, a skip elsewhere.
func natsBinary(t *testing.T) string {
	t.Helper()
	bin, err := FindBinary("nats-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("nats-server: %v", err)
		}
		t.Skipf("nats-server: %v", err)
	}
	return bin
}

// A node that never comes up must fail the cluster's start, even when its
// monitoring port answers (another process's server took the port after
// FreePort found it free: with several test processes each starting
// clusters, another nats-server's monitor). Before, the health check was
// asked before the node's exit was looked at, the two other nodes formed a
// quorum, WaitHealthy skipped the node that was not running, and the
// cluster was reported ready with a dead node.
func TestNATSClusterStartFailsWhenANodeNeverComesUp(t *testing.T) {
	bin := natsBinary(t)
	// Whatever answers on the monitoring port says healthy.
	foreign := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer foreign.Close()
	foreignPort := foreign.Listener.Addr().(*net.TCPAddr).Port
	// The node's client port is taken too, so it cannot start at all.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	c := &NATSCluster{Binary: bin, Name: "qfetch", http: &http.Client{Timeout: monitorTimeout}}
	for i := range 3 {
		name := "n" + strconv.Itoa(i+1)
		node := &NATSNode{Name: name, Dir: filepath.Join(dir, name, "js"), binary: bin, conf: filepath.Join(dir, name, "nats.conf")}
		for _, p := range []*int{&node.ClientPort, &node.ClusterPort, &node.MonitorPort} {
			if *p, err = FreePort(); err != nil {
				t.Fatal(err)
			}
		}
		if i == 2 {
			node.ClientPort, node.MonitorPort = takenPort, foreignPort
		}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(func() { c.killAll() })

	err = c.start("")
	if err == nil {
		t.Fatalf("the cluster started with node n3 not running (running: %t %t %t)", c.Running(0), c.Running(1), c.Running(2))
	}
	if !errors.Is(err, errExited) {
		t.Errorf("start = %v, want errExited (a node that died is worth a retry on other ports)", err)
	}
	for i := range c.Nodes {
		if c.Running(i) {
			t.Errorf("node %s still runs after the failed start", c.Nodes[i].Name)
		}
	}
}
