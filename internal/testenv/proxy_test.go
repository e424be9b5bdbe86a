package testenv_test

import (
	"errors"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qfetch/qfetch/internal/testenv"
)

// quiet is how long a test waits to see that nothing arrives.
const quiet = 200 * time.Millisecond

// target is a TCP server whose accepted connections the test holds.
func target(t *testing.T) (addr string, accepted <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 16)
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			ch <- c
		}
	}()
	return ln.Addr().String(), ch
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func accepted(t *testing.T, ch <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the target accepted no connection")
		return nil
	}
}

// readN reads exactly len(want) bytes within a few seconds and compares.
func readN(t *testing.T, c net.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("read %q, %v; want %q", got, err, want)
	}
}

// readNothing checks that nothing, not even EOF, arrives for a while.
func readNothing(t *testing.T, c net.Conn, side string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(quiet))
	n, err := c.Read(make([]byte, 16))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s read %d bytes, %v; want a deadline with nothing read", side, n, err)
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// TestProxyFreezeHoldsThenThawDelivers: bytes flow both ways; frozen, none
// pass and no EOF arrives even when one end closes; thawed, the held bytes
// arrive in order, then the close.
func TestProxyFreezeHoldsThenThawDelivers(t *testing.T) {
	addr, ch := target(t)
	p := testenv.NewProxy(t, addr)
	client := dial(t, p.Addr())
	server := accepted(t, ch)

	write(t, client, "ping")
	readN(t, server, "ping")
	write(t, server, "pong")
	readN(t, client, "pong")

	p.Freeze()
	write(t, client, "held-up")
	write(t, server, "held-down")
	readNothing(t, server, "server")
	readNothing(t, client, "client")
	_ = server.Close()
	readNothing(t, client, "client after the server closed")

	p.Thaw()
	readN(t, client, "held-down")
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("after the held bytes: %d, %v; want the server's close", n, err)
	}
}

// TestProxyNewConnectionWaitsForThaw: a connection made while frozen
// reaches the target only after Thaw.
func TestProxyNewConnectionWaitsForThaw(t *testing.T) {
	addr, ch := target(t)
	p := testenv.NewProxy(t, addr)
	p.Freeze()
	client := dial(t, p.Addr())
	write(t, client, "hello")
	select {
	case <-ch:
		t.Fatal("the target saw a connection while frozen")
	case <-time.After(quiet):
	}
	p.Thaw()
	readN(t, accepted(t, ch), "hello")
}

// TestProxyCut: Cut closes current connections at once, frozen or not;
// later connections flow.
func TestProxyCut(t *testing.T) {
	addr, ch := target(t)
	p := testenv.NewProxy(t, addr)
	client := dial(t, p.Addr())
	server := accepted(t, ch)
	write(t, client, "x")
	readN(t, server, "x")

	p.Freeze()
	p.Cut()
	for side, c := range map[string]net.Conn{"client": client, "server": server} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s after Cut: %v; want the connection closed", side, err)
		}
	}
	p.Thaw()
	again := dial(t, p.Addr())
	write(t, again, "y")
	readN(t, accepted(t, ch), "y")
}

// TestProxyPartitionsNATS: a NATS client through a frozen proxy sees
// nothing wrong until its own ping timeout; its requests time out; thawed,
// they work again.
func TestProxyPartitionsNATS(t *testing.T) {
	srv := testenv.StartNATS(t)
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.NewProxy(t, u.Host)

	responder, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(responder.Close)
	if _, err := responder.Subscribe("probe", func(m *nats.Msg) { _ = m.Respond([]byte("pong")) }); err != nil {
		t.Fatal(err)
	}
	if err := responder.Flush(); err != nil {
		t.Fatal(err)
	}

	var disconnected atomic.Value // the error the client saw, once it saw one
	const pingInterval, maxPingsOut = 500 * time.Millisecond, 2
	nc, err := nats.Connect("nats://"+p.Addr(),
		nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(maxPingsOut),
		nats.ReconnectWait(50*time.Millisecond), nats.MaxReconnects(-1), nats.Timeout(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				disconnected.Store(err)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if m, err := nc.Request("probe", nil, 5*time.Second); err != nil || string(m.Data) != "pong" {
		t.Fatalf("request through the proxy: %v", err)
	}

	p.Freeze()
	frozenAt := time.Now()
	if _, err := nc.Request("probe", nil, quiet); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("request while frozen: %v, want a timeout", err)
	}
	if since := time.Since(frozenAt); since < pingInterval && (nc.Status() != nats.CONNECTED || disconnected.Load() != nil) {
		t.Fatalf("%v into the freeze, before any ping could fail: status %v, error %v", since, nc.Status(), disconnected.Load())
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return disconnected.Load() != nil },
		"the client to find its connection stale by its own pings")
	if err, _ := disconnected.Load().(error); !errors.Is(err, nats.ErrStaleConnection) {
		t.Fatalf("the client lost its connection with %v, want a stale connection", err)
	}

	p.Thaw()
	testenv.EventuallyOK(t, 10*time.Second, func() error {
		_, err := nc.Request("probe", nil, quiet)
		return err
	}, "a request after the thaw")
}
