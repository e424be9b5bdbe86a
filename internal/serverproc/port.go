package serverproc

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// portSeq makes this process hand out each port of its range once before
// reusing one.
var portSeq atomic.Uint32

// FreePort returns a TCP port free on 127.0.0.1 now, for a server that must
// be told its port. The port comes from below the kernel's ephemeral range
// when there is room: a port from inside it (what ":0" gives) can be taken
// by any outgoing connection before the server binds it, and with many
// clients at work that happened. Within the range a process starts at an
// offset of its own and never hands a port out twice in a row, so
// concurrent test processes rarely meet; callers still retry with a fresh
// port when a bind fails.
func FreePort() (int, error) {
	lo, hi := staticRange()
	if n := hi - lo; n >= 1000 {
		base := os.Getpid() * 7919
		for range 100 {
			p := lo + (base+int(portSeq.Add(1)))%n
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				continue
			}
			l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// staticRange is [lo, hi): ports above the well-known ones and below the
// ephemeral range (Linux's ip_local_port_range; 32768 elsewhere).
func staticRange() (lo, hi int) {
	lo, hi = 10000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				hi = n
			}
		}
	}
	return lo, hi
}
