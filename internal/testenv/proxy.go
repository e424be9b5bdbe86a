package testenv

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy in front of one address, for partition
// tests: Freeze stops every byte in both directions while every connection
// stays open, as a network partition does, and Thaw lets them flow again.
//
// Bytes sent while frozen are held, not dropped: they wait in the proxy and
// the sockets' buffers (a sender that fills them blocks, as over a real
// partition) and arrive after Thaw, in order. A peer that closes or resets
// its end while frozen is likewise only seen by the other peer after Thaw.
// So neither end sees an error or EOF from the proxy while it is frozen; a
// client notices the partition only by its own timeouts (a NATS client by
// its ping interval × max pings out), which is what the tests are about.
// Connections accepted while frozen are dialled to the target at Thaw.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string

	// fwd is held for reading by every write in flight, so that Freeze,
	// taking it for writing, returns only once none is.
	fwd sync.RWMutex

	mu     sync.Mutex
	frozen bool
	thawed chan struct{} // closed while not frozen
	closed bool
	conns  map[*proxyConn]struct{}
	wg     sync.WaitGroup
}

type proxyConn struct {
	client net.Conn
	once   sync.Once
	done   chan struct{} // closed by close: Cut, the proxy's end, or both directions over

	mu     sync.Mutex
	server net.Conn
}

func (c *proxyConn) close() {
	c.once.Do(func() {
		close(c.done)
		_ = c.client.Close()
		c.mu.Lock()
		if c.server != nil {
			_ = c.server.Close()
		}
		c.mu.Unlock()
	})
}

// proxyDialTimeout bounds the dial to the target; it is on loopback.
const proxyDialTimeout = 5 * time.Second

// NewProxy starts a proxy on 127.0.0.1 that forwards every connection to
// target (host:port). It is closed, and its connections cut, when the test
// ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy listen: %v", err)
	}
	p := &Proxy{t: t, ln: ln, target: target, thawed: make(chan struct{}), conns: map[*proxyConn]struct{}{}}
	close(p.thawed)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the host:port to dial instead of the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops forwarding in both directions and returns once no byte is
// being forwarded (a write blocked on a peer that reads nothing holds it
// up until that peer reads or goes). Connections stay open. Freezing a
// frozen proxy does nothing.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	if !p.frozen {
		p.frozen = true
		p.thawed = make(chan struct{})
	}
	p.mu.Unlock()
	p.fwd.Lock()
	//lint:ignore SA2001 an empty critical section: waiting for in-flight writes is the point
	p.fwd.Unlock()
}

// Thaw forwards again, held bytes first.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		p.frozen = false
		close(p.thawed)
	}
}

// Cut closes every current connection at once, both ends, frozen or not:
// a reset rather than a partition. New connections are accepted as before.
func (p *Proxy) Cut() {
	p.mu.Lock()
	conns := make([]*proxyConn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.close()
	}
}

func (p *Proxy) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.Cut()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		pc := &proxyConn{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = c.Close()
			return
		}
		p.conns[pc] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(pc)
	}
}

// serve dials the target once thawed and pumps both ways until both
// directions are over or the connection is cut.
func (p *Proxy) serve(pc *proxyConn) {
	defer p.wg.Done()
	defer func() {
		pc.close()
		p.mu.Lock()
		delete(p.conns, pc)
		p.mu.Unlock()
	}()
	if !p.waitThawed(pc) {
		return
	}
	s, err := net.DialTimeout("tcp", p.target, proxyDialTimeout)
	if err != nil {
		return // the client sees its connection close, as with a refused dial
	}
	pc.mu.Lock()
	pc.server = s
	pc.mu.Unlock()
	select {
	case <-pc.done: // cut while dialling
		_ = s.Close()
		return
	default:
	}
	var both sync.WaitGroup
	both.Add(2)
	go func() { defer both.Done(); p.pump(pc, pc.client, s) }()
	go func() { defer both.Done(); p.pump(pc, s, pc.client) }()
	both.Wait()
}

// waitThawed blocks while the proxy is frozen and reports false when the
// connection was closed meanwhile.
func (p *Proxy) waitThawed(pc *proxyConn) bool {
	p.mu.Lock()
	ch := p.thawed
	p.mu.Unlock()
	select {
	case <-ch:
	case <-pc.done:
		return false
	}
	select {
	case <-pc.done:
		return false
	default:
		return true
	}
}

// pump copies src to dst, holding every write, and the end of src, while
// the proxy is frozen.
func (p *Proxy) pump(pc *proxyConn, src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.forward(pc, dst, buf[:n]) {
			pc.close()
			return
		}
		if err == nil {
			continue
		}
		if !p.waitThawed(pc) {
			return
		}
		if tcp, ok := dst.(*net.TCPConn); ok && errors.Is(err, io.EOF) {
			// Pass the half-close on: the other direction may still flow.
			_ = tcp.CloseWrite()
			return
		}
		pc.close()
		return
	}
}

// forward writes b to dst once the proxy is thawed; false when the
// connection is over.
func (p *Proxy) forward(pc *proxyConn, dst net.Conn, b []byte) bool {
	for {
		if !p.waitThawed(pc) {
			return false
		}
		p.fwd.RLock()
		p.mu.Lock()
		frozen := p.frozen
		p.mu.Unlock()
		if frozen {
			// Frozen between the wait and the lock: wait again.
			p.fwd.RUnlock()
			continue
		}
		_, err := dst.Write(b)
		p.fwd.RUnlock()
		return err == nil
	}
}
