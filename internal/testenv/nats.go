package testenv

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const natsReadyTimeout = 30 * time.Second

// NATSServer is an embedded nats-server with JetStream, owned by one test.
// It keeps its port and store directory across Stop and Start, so a test can
// take NATS away mid-run and bring it back with its streams intact.
type NATSServer struct {
	t    testing.TB
	opts *server.Options // template for each start; Port is fixed after the first

	mu  sync.Mutex
	srv *server.Server
}

// NATS starts an embedded JetStream server for the test and returns it; it is
// shut down when the test ends.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	return StartNATS(t).Server()
}

// NATSURL starts an embedded JetStream server for the test and returns its URL.
func NATSURL(t testing.TB) string {
	t.Helper()
	return StartNATS(t).URL()
}

// Connect opens a JetStream connection to url for the rest of the test.
func Connect(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	_, js := connect(t, url)
	return js
}

// ConnectCluster opens a JetStream connection to urls, a cluster's
// servers, for the rest of the test, as a pod's: it reconnects for ever,
// every 50 ms, so that a test can take servers away and bring them back
// under it. opts come after those, and may change them.
func ConnectCluster(t testing.TB, urls string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return connect(t, urls, append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, opts...)...)
}

func connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("testenv: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testenv: jetstream: %v", err)
	}
	return nc, js
}

// JetStream is one test's JetStream: a fresh embedded server, a connection,
// and a context that ends a minute on.
type JetStream struct {
	URL string
	JS  jetstream.JetStream
	Ctx context.Context
}

// NewJetStream starts a server for the test and connects to it.
func NewJetStream(t *testing.T) JetStream {
	t.Helper()
	url := NATSURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return JetStream{URL: url, JS: Connect(t, url), Ctx: ctx}
}

// StartNATS starts an embedded JetStream server on 127.0.0.1 with a random
// port and a store in t.TempDir(); it is shut down when the test ends.
func StartNATS(t testing.TB) *NATSServer {
	t.Helper()
	n := &NATSServer{
		t: t,
		opts: &server.Options{
			ServerName: "qfetch-test",
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      !verbose(),
		},
	}
	if err := n.start(); err != nil {
		t.Fatalf("testenv: start NATS: %v", err)
	}
	t.Cleanup(n.Stop)
	return n
}

// Server returns the running server, or nil while stopped.
func (n *NATSServer) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// URL returns the client URL; it stays the same across restarts.
func (n *NATSServer) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("nats://%s:%d", n.opts.Host, n.opts.Port)
}

// StoreDir returns the JetStream store directory.
func (n *NATSServer) StoreDir() string {
	return n.opts.StoreDir
}

// Stop shuts the server down and waits until it is gone. Stopping a stopped
// server does nothing.
func (n *NATSServer) Stop() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Start starts a stopped server again on the same port and store directory.
// Call it from the test's goroutine.
func (n *NATSServer) Start() {
	n.t.Helper()
	if err := n.start(); err != nil {
		n.t.Fatalf("testenv: restart NATS: %v", err)
	}
}

// Restart is Stop then Start.
func (n *NATSServer) Restart() {
	n.t.Helper()
	n.Stop()
	n.Start()
}

func (n *NATSServer) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return fmt.Errorf("already running on port %d", n.opts.Port)
	}
	s, err := server.NewServer(n.opts.Clone())
	if err != nil {
		return err
	}
	s.ConfigureLogger() // a no-op under NoLog
	s.Start()
	if !s.ReadyForConnections(natsReadyTimeout) {
		s.Shutdown()
		s.WaitForShutdown()
		return fmt.Errorf("not ready for connections within %v", natsReadyTimeout)
	}
	if n.opts.Port == server.RANDOM_PORT {
		addr, ok := s.Addr().(*net.TCPAddr)
		if !ok {
			s.Shutdown()
			s.WaitForShutdown()
			return fmt.Errorf("unexpected listen address %v", s.Addr())
		}
		n.opts.Port = addr.Port
	}
	n.srv = s
	return nil
}

// StreamUpdates runs f and returns the names of the streams whose update
// requests nc sent meanwhile, in order: the server delivers nc's own
// requests to nc's subscription before its answer to the flush after f.
// It is how a test sees that a set-up changed nothing (a stream-updated
// advisory comes from each stream's leader, in no order across servers).
func StreamUpdates(t testing.TB, nc *nats.Conn, f func()) []string {
	t.Helper()
	sub, err := nc.SubscribeSync("$JS.API.STREAM.UPDATE.>")
	if err != nil {
		t.Fatalf("testenv: subscribe to stream updates: %v", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatalf("testenv: flush: %v", err)
	}
	f()
	if err := nc.Flush(); err != nil {
		t.Fatalf("testenv: flush: %v", err)
	}
	var names []string
	for {
		m, err := sub.NextMsg(0)
		if err != nil {
			return names
		}
		names = append(names, m.Subject[strings.LastIndex(m.Subject, ".")+1:])
	}
}
