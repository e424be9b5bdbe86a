package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSCluster is an embedded three-node JetStream cluster in this process,
// owned by one test: servers n1..n3 on 127.0.0.1, routed to each other,
// each with a file store in the test's temp dir. Every node keeps its client
// and route ports and its store across Shutdown and Start, so a test can
// take nodes away mid-run (down to a quorum loss) and bring them back with
// their streams intact.
type NATSCluster struct {
	t     testing.TB
	opts  []*server.Options
	mu    sync.Mutex
	nodes []*server.Server
}

// ClusterSize is the number of nodes of a NATSCluster.
const ClusterSize = 3

// StartNATSCluster starts the three nodes and waits until the cluster is
// ready (see WaitReady); they are shut down when the test ends.
func StartNATSCluster(t testing.TB) *NATSCluster {
	t.Helper()
	ports := freePorts(t, 2*ClusterSize)
	client, routes := ports[:ClusterSize], ports[ClusterSize:]
	var routeURLs []*url.URL
	for _, p := range routes {
		routeURLs = append(routeURLs, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
	}
	c := &NATSCluster{t: t, nodes: make([]*server.Server, ClusterSize)}
	for i := range ClusterSize {
		c.opts = append(c.opts, &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       client[i],
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      !verbose(),
			Cluster: server.ClusterOpts{
				Name: "qfetch-test",
				Host: "127.0.0.1",
				Port: routes[i],
			},
			Routes: routeURLs,
		})
	}
	t.Cleanup(c.Stop)
	// The nodes start together: each waits for its routes only once it is
	// up, and JetStream needs a quorum before any of them is ready.
	var wg sync.WaitGroup
	errs := make([]error, ClusterSize)
	for i := range ClusterSize {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("testenv: start NATS node n%d: %v", i+1, err)
		}
	}
	c.WaitReady(2 * natsReadyTimeout)
	return c
}

// freePorts reserves n distinct loopback ports and frees them for the
// caller: a fixed port is what lets a node restart where its peers and
// clients look for it.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: reserve a port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// URL returns node i's client URL (i from 0); it stays the same across
// restarts.
func (c *NATSCluster) URL(i int) string {
	return fmt.Sprintf("nats://%s:%d", c.opts[i].Host, c.opts[i].Port)
}

// URLs returns every node's client URL, comma-separated: what
// QFETCH_NATS_URL names for a cluster.
func (c *NATSCluster) URLs() string {
	var us []string
	for i := range ClusterSize {
		us = append(us, c.URL(i))
	}
	return strings.Join(us, ",")
}

// Server returns node i, or nil while it is down.
func (c *NATSCluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Running reports whether node i is up.
func (c *NATSCluster) Running(i int) bool { return c.Server(i) != nil }

// Shutdown stops node i and waits until it is gone; a node already down
// is left alone.
func (c *NATSCluster) Shutdown(i int) {
	c.mu.Lock()
	s := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Start starts node i again on its ports and store. It returns once the
// node takes clients, which does not mean JetStream has a quorum again:
// see WaitMetaLeader.
func (c *NATSCluster) Start(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatalf("testenv: restart NATS node n%d: %v", i+1, err)
	}
}

// Stop shuts every node down.
func (c *NATSCluster) Stop() {
	var wg sync.WaitGroup
	for i := range ClusterSize {
		wg.Go(func() { c.Shutdown(i) })
	}
	wg.Wait()
}

// MetaLeader is the index of the node that leads the JetStream meta group,
// or -1 when none does (a quorum loss, an election).
func (c *NATSCluster) MetaLeader() int {
	for i := range ClusterSize {
		if s := c.Server(i); s != nil && s.JetStreamIsLeader() {
			return i
		}
	}
	return -1
}

// StreamLeader is the index of the node that leads the named stream of the
// global account, or -1 when none does. A leader cut off from its peers
// keeps leading until its group notices the lost quorum, which need not
// be when the meta group does.
func (c *NATSCluster) StreamLeader(stream string) int {
	for i := range ClusterSize {
		if s := c.Server(i); s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return i
		}
	}
	return -1
}

// WaitMetaLeader waits until a running node leads the meta group, every
// running node is current with it, and it has heard from every running
// node, failing the test after timeout.
func (c *NATSCluster) WaitMetaLeader(timeout time.Duration) int {
	c.t.Helper()
	leader := -1
	EventuallyOK(c.t, timeout, func() error {
		var err error
		leader, err = c.metaReady()
		return err
	}, "a JetStream meta leader")
	return leader
}

// WaitReady waits until the cluster serves what a test asks of it, failing
// the test after timeout: a meta leader as WaitMetaLeader's, and every
// stream of the account (KV buckets are streams too) led, with its
// replicas on running nodes current. Each comes apart from the others
// after a start or a quorum regained: CI met a bucket without a leader
// after the queue's stream had one.
//
// Two things it cannot promise. A new cluster can refuse the first R3
// placements "no suitable peers" a while longer (the meta leader has not
// yet heard every node's configuration, or counts one offline for a
// moment): create them with SetUp. Consumers are not waited for, since an
// ephemeral one on a node that went has no leader until its inactivity
// runs out: a test asks its own durable consumer until it answers.
func (c *NATSCluster) WaitReady(timeout time.Duration) {
	c.t.Helper()
	EventuallyOK(c.t, timeout, func() error {
		if _, err := c.metaReady(); err != nil {
			return err
		}
		return c.streamsLed()
	}, "the NATS cluster ready")
}

// SetUp runs f, an idempotent set-up (creating streams, buckets,
// consumers), until it succeeds, for up to two minutes, each try bounded
// by 15 s; it fails the test after that. It is how a test makes its first
// objects on a new or just restarted cluster, which may refuse a placement
// or leave a request unanswered for a while after WaitReady, as the
// planner's set-up asks again (app.setUp).
func (c *NATSCluster) SetUp(what string, f func(ctx context.Context) error) {
	c.t.Helper()
	EventuallyOK(c.t, 2*time.Minute, func() error {
		ctx, cancel := context.WithTimeout(c.t.Context(), 15*time.Second)
		defer cancel()
		return f(ctx)
	}, "%s", what)
}

// streamsLed is WaitReady's look at the streams, through a connection of
// its own to the running nodes: nil when each is led and current.
func (c *NATSCluster) streamsLed() error {
	var urls []string
	running := map[string]bool{}
	for i := range ClusterSize {
		if c.Running(i) {
			urls = append(urls, c.URL(i))
			running[c.opts[i].ServerName] = true
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The names come from the meta group; each stream's info from its
	// leader, so a stream without one fails here (a listing of infos
	// would pass over it).
	names := js.StreamNames(ctx)
	var all []string
	for name := range names.Name() {
		all = append(all, name)
	}
	if err := names.Err(); err != nil {
		return fmt.Errorf("list streams: %w", err)
	}
	for _, name := range all {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("stream %s has no leader", name)
		}
		for _, r := range info.Cluster.Replicas {
			if running[r.Name] && (r.Offline || !r.Current) {
				return fmt.Errorf("stream %s: replica %s not current (lag %d)", name, r.Name, r.Lag)
			}
		}
	}
	return nil
}

// metaReady is WaitMetaLeader's check: the leader's index, or why there is
// none fit to use yet.
func (c *NATSCluster) metaReady() (int, error) {
	leader := c.MetaLeader()
	if leader < 0 {
		return -1, fmt.Errorf("no meta leader")
	}
	running := 0
	for i := range ClusterSize {
		s := c.Server(i)
		if s == nil {
			continue
		}
		running++
		if !s.JetStreamIsCurrent() {
			return -1, fmt.Errorf("n%d not current with the meta leader", i+1)
		}
	}
	// A stream at R3 is placed only on peers the leader has heard from:
	// until then, creating one fails ("no suitable peers").
	if s := c.Server(leader); s == nil || len(s.JetStreamClusterPeers()) < running {
		return -1, fmt.Errorf("the meta leader knows fewer than the %d running peers", running)
	}
	return leader, nil
}

func (c *NATSCluster) start(i int) error {
	c.mu.Lock()
	running := c.nodes[i] != nil
	c.mu.Unlock()
	if running {
		return fmt.Errorf("already running on port %d", c.opts[i].Port)
	}
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	s.Start()
	if !s.ReadyForConnections(natsReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("not ready for connections within %v", natsReadyTimeout)
	}
	c.mu.Lock()
	c.nodes[i] = s
	c.mu.Unlock()
	return nil
}
