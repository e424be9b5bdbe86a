package serverproc

import (
	"bytes"
	"io"
	"sync"
)

// logTail bounds how much of a server's output is kept for error messages.
const logTail = 32 << 10

// redactingLog keeps the tail of a process's output, line by line, with the
// secret replaced, and copies each line to echo when set.
type redactingLog struct {
	secret []byte
	echo   io.Writer

	mu      sync.Mutex
	partial []byte
	tail    []byte
}

func newRedactingLog(secret string, echo io.Writer) *redactingLog {
	return &redactingLog{secret: []byte(secret), echo: echo}
}

func (l *redactingLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.add(l.partial[:i+1])
		l.partial = l.partial[i+1:]
	}
	// A line this long is no log line; keep it bounded all the same.
	if len(l.partial) > logTail {
		l.add(l.partial)
		l.partial = nil
	}
	return len(b), nil
}

// add is called with mu held.
func (l *redactingLog) add(line []byte) {
	line = bytes.ReplaceAll(line, l.secret, []byte("[REDACTED]"))
	if l.echo != nil {
		_, _ = l.echo.Write(line)
	}
	l.tail = append(l.tail, line...)
	if over := len(l.tail) - logTail; over > 0 {
		l.tail = append(l.tail[:0:0], l.tail[over:]...)
	}
}

func (l *redactingLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.tail) + string(bytes.ReplaceAll(l.partial, l.secret, []byte("[REDACTED]")))
}
