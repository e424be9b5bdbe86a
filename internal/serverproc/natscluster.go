package serverproc

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// natsReadyTimeout bounds a node's start and the cluster's first meta
	// leader election. Generous: on a loaded 2-core machine three JetStream
	// servers start and elect in seconds, while an idle one takes under one.
	natsReadyTimeout = 90 * time.Second
	natsStopGrace    = 10 * time.Second
	// monitorTimeout keeps a lookup from stalling on a node that is stopped
	// (SIGSTOP) or wedged; a killed node refuses at once.
	monitorTimeout = 2 * time.Second
	natsPollEvery  = 25 * time.Millisecond
)

// NATSCluster is a JetStream cluster of nats-server processes on 127.0.0.1:
// each node has its own client, route and monitoring port and its own file
// store, all kept across Stop/Kill and Start, so a test can take nodes away
// mid-run and bring them back with their data.
type NATSCluster struct {
	Binary string
	Name   string // the cluster's name
	Nodes  []*NATSNode

	http *http.Client
}

// NATSNode is one server of a NATSCluster.
type NATSNode struct {
	Name        string // server name, e.g. "n1"
	ClientPort  int
	ClusterPort int
	MonitorPort int
	Dir         string // JetStream store directory

	binary string
	conf   string    // the generated config file
	echo   io.Writer // nil: none

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited
	logs *redactingLog
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
//
// Node i is named "n<i+1>"; its config file and store live in
// dir/<name>/ (the store in dir/<name>/js).
func StartNATSCluster(binary, dir string, opts ClusterOptions) (*NATSCluster, error) {
	n := opts.Nodes
	if n <= 0 {
		n = 3
	}
	var echo io.Writer
	if opts.Echo != nil {
		// Nodes write lines concurrently; one lock keeps lines whole.
		echo = &syncWriter{w: opts.Echo}
	}
	var lastErr error
	// A free port found here may be taken by someone else before a node binds
	// it; a few tries with fresh ports make that race harmless.
	for attempt := range 3 {
		c := &NATSCluster{
			Binary: binary,
			Name:   "qfetch",
			http:   &http.Client{Timeout: monitorTimeout},
		}
		for i := range n {
			name := "n" + strconv.Itoa(i+1)
			nodeDir := filepath.Join(dir, name)
			if attempt > 0 {
				// A failed try may have left a half-formed store behind; the
				// next one starts clean as the first did.
				if err := os.RemoveAll(nodeDir); err != nil {
					return nil, fmt.Errorf("nats cluster: clear %s: %w", nodeDir, err)
				}
			}
			node := &NATSNode{Name: name, Dir: filepath.Join(nodeDir, "js"), binary: binary, conf: filepath.Join(nodeDir, "nats.conf")}
			if echo != nil {
				node.echo = &prefixWriter{prefix: "[" + name + "] ", w: echo}
			}
			for _, p := range []*int{&node.ClientPort, &node.ClusterPort, &node.MonitorPort} {
				port, err := FreePort()
				if err != nil {
					return nil, err
				}
				*p = port
			}
			c.Nodes = append(c.Nodes, node)
		}
		if lastErr = c.start(opts.ExtraConfig); lastErr == nil {
			return c, nil
		}
		// Only a node that died at start (a port taken under it) is worth a
		// try on other ports; a cluster that came up but did not form would
		// fail the same way again, after as long a wait.
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	return nil, lastErr
}

// start writes every node's config, starts all of them (a node waits for its
// routes, so none can be waited for alone), and waits for the cluster to be
// ready; on failure it stops what it started.
func (c *NATSCluster) start(extra string) error {
	for _, node := range c.Nodes {
		if err := os.MkdirAll(node.Dir, 0o700); err != nil {
			return fmt.Errorf("nats cluster: store dir: %w", err)
		}
		if err := os.WriteFile(node.conf, []byte(c.config(node, extra)), 0o600); err != nil {
			return fmt.Errorf("nats cluster: config: %w", err)
		}
	}
	for _, node := range c.Nodes {
		if err := node.spawn(); err != nil {
			c.killAll()
			return err
		}
	}
	err := c.waitReady()
	if err != nil {
		var out strings.Builder
		for _, node := range c.Nodes {
			fmt.Fprintf(&out, "--- %s:\n%s", node.Name, node.Logs())
		}
		c.killAll()
		return fmt.Errorf("%w; output:\n%s", err, out.String())
	}
	return nil
}

func (c *NATSCluster) waitReady() error {
	deadline := time.Now().Add(natsReadyTimeout)
	for _, node := range c.Nodes {
		if err := c.waitNodeUp(node, time.Until(deadline)); err != nil {
			return err
		}
	}
	// The meta leader is what makes JetStream answer; then every node's full
	// health check (meta leader known, assets current) passes.
	if err := poll(time.Until(deadline), nil, func() error {
		_, err := c.MetaLeader()
		return err
	}); err != nil {
		return fmt.Errorf("nats cluster %s: no meta leader within %v: %w", c.Name, natsReadyTimeout, err)
	}
	if err := c.WaitHealthy(time.Until(deadline)); err != nil {
		return err
	}
	// WaitHealthy, rightly for a later wait, passes over a node that is not
	// running; at start every node must be.
	for _, node := range c.Nodes {
		if err := node.alive(); err != nil {
			return err
		}
	}
	return nil
}

// alive fails with errExited when the node's process has ended.
func (n *NATSNode) alive() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() {
		return fmt.Errorf("nats node %s (client %d, route %d, monitor %d): %w",
			n.Name, n.ClientPort, n.ClusterPort, n.MonitorPort, errExited)
	}
	return nil
}

// waitNodeUp waits until node answers its health check with JetStream
// enabled: it accepts connections and has its store open. Catching up with
// the cluster is WaitHealthy's concern: with too few nodes running there is
// no meta leader and the full check cannot pass.
func (c *NATSCluster) waitNodeUp(node *NATSNode, timeout time.Duration) error {
	u := node.monitorURL() + "/healthz?js-enabled-only=true"
	exited := node.exited()
	err := poll(timeout, exited, func() error {
		if err := c.healthz(u); err != nil {
			return err
		}
		// What answered may be another process on the node's port (taken
		// after FreePort found it free), the node itself failing to bind it:
		// an answer counts while the node's process lives.
		select {
		case <-exited:
			return errExited
		default:
			return nil
		}
	})
	if err != nil {
		return fmt.Errorf("nats node %s (client %d, route %d, monitor %d): %w",
			node.Name, node.ClientPort, node.ClusterPort, node.MonitorPort, err)
	}
	return nil
}

// config is node's config file: its own ports, store and name, and routes
// to every other node.
func (c *NATSCluster) config(node *NATSNode, extra string) string {
	var routes []string
	for _, other := range c.Nodes {
		if other != node {
			routes = append(routes, fmt.Sprintf("    nats-route://127.0.0.1:%d", other.ClusterPort))
		}
	}
	return fmt.Sprintf(`# generated by qfetch serverproc for a local test cluster
server_name: %q
listen: "127.0.0.1:%d"
http: "127.0.0.1:%d"
jetstream {
  store_dir: %q
}
cluster {
  name: %q
  listen: "127.0.0.1:%d"
  routes: [
%s
  ]
}
%s
`, node.Name, node.ClientPort, node.MonitorPort, node.Dir, c.Name, node.ClusterPort,
		strings.Join(routes, "\n"), extra)
}

// URLs is every node's client URL, comma-separated: what QFETCH_NATS_URL takes.
func (c *NATSCluster) URLs() string {
	urls := make([]string, len(c.Nodes))
	for i := range c.Nodes {
		urls[i] = c.URL(i)
	}
	return strings.Join(urls, ",")
}

// URL is node i's client URL.
func (c *NATSCluster) URL(i int) string {
	return "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Nodes[i].ClientPort))
}

// MonitorURL is node i's monitoring base URL (http://127.0.0.1:port), for
// /varz, /jsz and the like.
func (c *NATSCluster) MonitorURL(i int) string { return c.Nodes[i].monitorURL() }

// Stop stops every running node gracefully and waits. The nodes stop one
// after another, so the last ones see their peers leave as in a rolling
// shutdown; that is quick, as nothing waits for a quorum on the way down.
func (c *NATSCluster) Stop() error {
	var errs []error
	for i := range c.Nodes {
		errs = append(errs, c.StopNode(i))
	}
	return errors.Join(errs...)
}

// StopNode stops node i gracefully (SIGTERM; SIGKILL after a grace period)
// and waits for it. Stopping a stopped node does nothing.
func (c *NATSCluster) StopNode(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.signalAndWait(syscall.SIGTERM, natsStopGrace)
}

// KillNode kills node i at once (SIGKILL), as a crash would, and waits.
func (c *NATSCluster) KillNode(i int) error {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.signalAndWait(syscall.SIGKILL, 0)
}

func (c *NATSCluster) killAll() {
	for i := range c.Nodes {
		_ = c.KillNode(i)
	}
}

// StartNode starts a stopped node again on its ports and store and waits
// until it answers its health check with JetStream enabled. It does not wait
// for the node to catch up (with a quorum away it never could): WaitHealthy
// and WaitStreamLeader do.
func (c *NATSCluster) StartNode(i int) error {
	node := c.Nodes[i]
	if err := node.spawn(); err != nil {
		return err
	}
	if err := c.waitNodeUp(node, natsReadyTimeout); err != nil {
		_ = c.KillNode(i)
		return fmt.Errorf("%w; output:\n%s", err, node.Logs())
	}
	return nil
}

// Running reports whether node i's process is alive.
func (c *NATSCluster) Running(i int) bool {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.running()
}

// PID is node i's process id while it runs; 0 otherwise.
func (c *NATSCluster) PID(i int) int {
	n := c.Nodes[i]
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.running() {
		return 0
	}
	return n.cmd.Process.Pid
}

// Logs is the end of node i's output.
func (c *NATSCluster) Logs(i int) string { return c.Nodes[i].Logs() }

// Logs is the end of the node's output.
func (n *NATSNode) Logs() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.logs == nil {
		return ""
	}
	return n.logs.String()
}

// StreamLeader returns the index of the node that leads the named stream
// (a KV bucket's stream is "KV_<bucket>"), read from the monitoring
// endpoints (/jsz); an error if no running node reports a leader.
//
// Only a leader's own word counts: a follower may still name a leader that
// was just killed. Should two nodes both claim the stream (an old leader
// that has not yet heard of the new term), the later one wins.
func (c *NATSCluster) StreamLeader(stream string) (int, error) {
	i, _, err := c.streamLeader(stream)
	return i, err
}

func (c *NATSCluster) streamLeader(stream string) (int, *jszStream, error) {
	best, bestDetail := -1, (*jszStream)(nil)
	var errs []error
	for i, node := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		var info jszInfo
		// stream-leader-only: each node lists just the streams it leads.
		if err := c.getJSON(node.monitorURL()+"/jsz?accounts=true&streams=true&stream-leader-only=true", &info); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node.Name, err))
			continue
		}
		for _, acc := range info.AccountDetails {
			for _, sd := range acc.Streams {
				if sd.Name != stream || sd.Cluster == nil || sd.Cluster.Leader != node.Name {
					continue
				}
				if bestDetail == nil || sd.Cluster.LeaderSince.After(bestDetail.Cluster.LeaderSince) {
					best, bestDetail = i, &sd
				}
			}
		}
	}
	if best < 0 {
		errs = append([]error{fmt.Errorf("no running node leads stream %q", stream)}, errs...)
		return -1, nil, errors.Join(errs...)
	}
	return best, bestDetail, nil
}

// MetaLeader returns the index of the JetStream meta leader: the running
// node that names itself meta leader in its /jsz.
func (c *NATSCluster) MetaLeader() (int, error) {
	var errs []error
	for i, node := range c.Nodes {
		if !c.Running(i) {
			continue
		}
		var info jszInfo
		if err := c.getJSON(node.monitorURL()+"/jsz", &info); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", node.Name, err))
			continue
		}
		if info.Meta != nil && info.Meta.Leader == node.Name {
			return i, nil
		}
	}
	errs = append([]error{errors.New("no running node is the JetStream meta leader")}, errs...)
	return -1, errors.Join(errs...)
}

// WaitStreamLeader waits up to timeout until the named stream has a
// leader and all its running replicas are current; it returns the leader.
//
// "Current" is the leader's own view of each follower (caught up and seen
// recently); a follower on a stopped node is not waited for. Lag is not
// required to be zero, so a stream under steady publishing still qualifies.
func (c *NATSCluster) WaitStreamLeader(stream string, timeout time.Duration) (int, error) {
	leader := -1
	err := poll(timeout, nil, func() error {
		i, sd, err := c.streamLeader(stream)
		if err != nil {
			return err
		}
		running := make(map[string]bool, len(c.Nodes))
		for j, node := range c.Nodes {
			running[node.Name] = c.Running(j)
		}
		for _, r := range sd.Cluster.Replicas {
			up, known := running[r.Name]
			if known && !up {
				continue
			}
			if r.Offline || !r.Current {
				return fmt.Errorf("stream %q: replica %s of leader %s not current (offline %v, lag %d)",
					stream, r.Name, c.Nodes[i].Name, r.Offline, r.Lag)
			}
		}
		leader = i
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("nats cluster %s: %w", c.Name, err)
	}
	return leader, nil
}

// WaitHealthy waits up to timeout until every running node's /healthz
// reports JetStream healthy (meta leader known, streams current).
func (c *NATSCluster) WaitHealthy(timeout time.Duration) error {
	err := poll(timeout, nil, func() error {
		var errs []error
		for i, node := range c.Nodes {
			if !c.Running(i) {
				continue
			}
			if err := c.healthz(node.monitorURL() + "/healthz"); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", node.Name, err))
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		return fmt.Errorf("nats cluster %s not healthy: %w", c.Name, err)
	}
	return nil
}

// StoreBytes is the bytes on disk under every node's store directory,
// summed (bench).
func (c *NATSCluster) StoreBytes() (int64, error) {
	var total int64
	for _, node := range c.Nodes {
		err := filepath.WalkDir(node.Dir, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				// A file the server removed between listing and stat is
				// simply no longer there.
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if d.Type().IsRegular() {
				info, err := d.Info()
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				if err != nil {
					return err
				}
				total += info.Size()
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("nats store size: %w", err)
		}
	}
	return total, nil
}

// healthz asks one health endpoint; nil when it answers 200.
func (c *NATSCluster) healthz(u string) error {
	resp, err := c.http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func (c *NATSCluster) getJSON(u string, v any) error {
	resp, err := c.http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", redactURL(u), resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", redactURL(u), err)
	}
	return nil
}

// redactURL keeps an error short: the path, not the query.
func redactURL(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Path
	}
	return u
}

// jszInfo is the part of nats-server's /jsz answer (server.JSInfo) read
// here; mirrored rather than imported so that no server package is linked
// into the bench and the tests' binaries for three fields.
type jszInfo struct {
	Meta *struct {
		Leader string `json:"leader"`
	} `json:"meta_cluster"`
	AccountDetails []struct {
		Name    string      `json:"name"`
		Streams []jszStream `json:"stream_detail"`
	} `json:"account_details"`
}

type jszStream struct {
	Name    string `json:"name"`
	Cluster *struct {
		Leader      string    `json:"leader"`
		LeaderSince time.Time `json:"leader_since"`
		Replicas    []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
			Lag     uint64 `json:"lag"`
		} `json:"replicas"`
	} `json:"cluster"`
}

func (n *NATSNode) monitorURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(n.MonitorPort))
}

// spawn starts the node's process without waiting for it to be ready.
func (n *NATSNode) spawn() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running() {
		return fmt.Errorf("nats node %s: already running", n.Name)
	}
	// Nothing secret is in a node's output (the config, with any passwords
	// of ExtraConfig, is never logged at this level), so the redaction is of
	// a random string that cannot occur.
	n.logs = newRedactingLog("\x00"+rand.Text(), n.echo)
	cmd := exec.Command(n.binary, "-c", n.conf)
	cmd.Stdout = n.logs
	cmd.Stderr = n.logs
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nats node %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	// Owned by the process: Stop and Kill wait for done. The exit status is
	// of no interest: a stop is ours, and an early exit shows in the logs.
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return nil
}

// exited is closed once the current process has exited; nil (never ready)
// if none was started.
func (n *NATSNode) exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.done
}

// running is called with mu held.
func (n *NATSNode) running() bool { return alive(n.done) }

// signalAndWait is called with mu held; it releases mu while it waits so the
// waiting goroutine can record the exit.
func (n *NATSNode) signalAndWait(sig syscall.Signal, grace time.Duration) error {
	if !n.running() {
		return nil
	}
	done, proc := n.done, n.cmd.Process
	n.mu.Unlock()
	defer n.mu.Lock()
	if !stopProcess(proc, done, sig, grace) {
		return fmt.Errorf("nats node %s: did not stop within %v of SIGTERM; killed", n.Name, grace)
	}
	return nil
}

// errExited is what a wait for a node says when its process ended first.
var errExited = errors.New("exited before it was ready")

// poll calls check until it returns nil, timeout passes, or exited closes
// (nil: never); the error says what check said last.
func poll(timeout time.Duration, exited <-chan struct{}, check func() error) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(natsPollEvery)
	defer tick.Stop()
	for {
		last := check()
		if last == nil {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-deadline.C:
			return fmt.Errorf("not ready within %v: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// syncWriter serialises writes from several nodes to one writer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// prefixWriter puts a node's name before each line; redactingLog writes
// whole lines, one per call.
type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if _, err := p.w.Write(append([]byte(p.prefix), b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}
