package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/serverproc"
)

const (
	readyTimeout = 60 * time.Second // a cold start on a loaded 2-core box takes seconds
	stopGrace    = 10 * time.Second
	tailBytes    = 32 << 10
)

// proc is one child process we started. Its output is kept (the tail only,
// secrets replaced) for error messages; it is stopped by PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	out  *tail
}

// startProc starts bin; secrets never reach the kept output.
func startProc(name, bin string, args, env, secrets []string) (*proc, error) {
	return startProcStdin(name, bin, args, env, secrets, nil)
}

// startProcStdin is startProc with stdin for the process.
func startProcStdin(name, bin string, args, env, secrets []string, stdin []byte) (*proc, error) {
	out := newTail(name, secrets)
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout = out
	cmd.Stderr = out
	// The kernel kills the child if the harness dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), out: out}
	// Owned by p: stop waits for done.
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the PID, then SIGKILL after stopGrace, and waits.
func (p *proc) stop() error {
	if p == nil || p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v; killed", p.name, p.pid(), stopGrace)
	}
}

// rusage is the exited process's resource usage.
func (p *proc) rusage() *syscall.Rusage {
	<-p.done
	return asRusage(p.cmd.ProcessState.SysUsage())
}

func asRusage(v any) *syscall.Rusage {
	ru, _ := v.(*syscall.Rusage)
	return ru
}

// verbose makes every child's output go to stderr too (-v), line by line
// with secrets replaced.
var verbose bool

// tail keeps the end of a process's output with secrets replaced.
type tail struct {
	name    string // -v: the prefix of its lines
	secrets [][]byte
	mu      sync.Mutex
	buf     []byte
	partial []byte // -v: the line being written
}

func newTail(name string, secrets []string) *tail {
	t := &tail{name: name}
	for _, s := range secrets {
		if s != "" {
			t.secrets = append(t.secrets, []byte(s))
		}
	}
	return t
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if verbose {
		t.partial = append(t.partial, b...)
		for {
			i := bytes.IndexByte(t.partial, '\n')
			if i < 0 {
				break
			}
			fmt.Fprintf(os.Stderr, "[%s] %s", t.name, t.redact(t.partial[:i+1]))
			t.partial = append(t.partial[:0], t.partial[i+1:]...)
		}
	}
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - 2*tailBytes; over > 0 {
		t.buf = append(t.buf[:0:0], t.buf[over:]...)
	}
	return len(b), nil
}

// String returns the last tailBytes of output, redacted. Redaction happens
// here, over the whole kept buffer, so a secret split across writes is caught.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.redact(t.buf)
	if len(b) > tailBytes {
		b = b[len(b)-tailBytes:]
	}
	return string(b)
}

func (t *tail) redact(b []byte) []byte {
	for _, s := range t.secrets {
		b = bytes.ReplaceAll(b, s, []byte("[REDACTED]"))
	}
	return b
}

// childEnv is the harness's environment without QFETCH_ and MINIO_ settings
// a developer may have exported, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QFETCH_") && !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// minioServer is bin/minio on a free loopback port with one bucket.
type minioServer struct {
	proc                                   *serverproc.MinIO
	Endpoint, AccessKey, SecretKey, Bucket string
	Client                                 *minio.Client
}

// startMinIO starts MinIO on dir and makes the bucket. With -v its output
// goes to stderr, line by line, like every child's.
func startMinIO(ctx context.Context, bin, dir, bucket string) (*minioServer, error) {
	var echo io.Writer
	if verbose {
		echo = &prefixed{name: "minio"}
	}
	p, err := serverproc.StartMinIO(bin, dir, echo)
	if err != nil {
		return nil, err
	}
	m := &minioServer{proc: p, Endpoint: p.Endpoint, AccessKey: p.AccessKey, SecretKey: p.SecretKey, Bucket: bucket}
	if m.Client, err = p.Client(); err == nil {
		err = m.Client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
	}
	if err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("minio: %w", err)
	}
	return m, nil
}

func (m *minioServer) pid() int    { return m.proc.PID() }
func (m *minioServer) stop() error { return m.proc.Stop() }

// prefixed copies whole lines to stderr behind the child's name.
type prefixed struct{ name string }

func (p *prefixed) Write(line []byte) (int, error) {
	fmt.Fprintf(os.Stderr, "[%s] %s", p.name, line)
	return len(line), nil
}

// natsServer is bin/nats-server with JetStream on a free loopback port.
type natsServer struct {
	*proc
	URL string
}

func startNATS(ctx context.Context, bin, dir string) (*natsServer, error) {
	var lastErr error
	for range 3 {
		port, err := serverproc.FreePort()
		if err != nil {
			return nil, err
		}
		n := &natsServer{URL: fmt.Sprintf("nats://127.0.0.1:%d", port)}
		n.proc, err = startProc("nats-server", bin,
			[]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port), "-js", "-sd", dir}, childEnv(), nil)
		if err != nil {
			return nil, err
		}
		lastErr = poll(ctx, readyTimeout, 20*time.Millisecond, func() (bool, error) {
			if n.exited() {
				return false, errors.New("exited before it was ready")
			}
			nc, err := nats.Connect(n.URL, nats.Timeout(time.Second), nats.NoReconnect())
			if err != nil {
				return false, nil
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return false, nil
			}
			actx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			_, err = js.AccountInfo(actx)
			return err == nil, nil
		})
		if lastErr == nil {
			return n, nil
		}
		_ = n.stop()
		lastErr = fmt.Errorf("%w; output:\n%s", lastErr, n.out)
	}
	return nil, fmt.Errorf("nats-server: %w", lastErr)
}

// poll calls cond every tick until it reports true or an error, or timeout.
func poll(ctx context.Context, timeout, tick time.Duration, cond func() (bool, error)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not ready within %v", timeout)
		case <-t.C:
		}
	}
}

// procCPU is a live process's user+system CPU time so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields are counted after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	// USER_HZ is 100 on every Linux ABI Go supports.
	return time.Duration(utime+stime) * (time.Second / 100), nil
}

// procHWM is a live process's peak RSS (VmHWM) in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}

// resetHWM sets a process's peak RSS back to its current RSS (Linux
// clear_refs "5"), so that one process can be measured rep by rep.
func resetHWM(pid int) error {
	return os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0)
}

func rusageCPU(ru *syscall.Rusage) time.Duration {
	if ru == nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rusageMaxRSS is ru_maxrss in bytes (Linux reports KiB).
func rusageMaxRSS(ru *syscall.Rusage) int64 {
	if ru == nil {
		return 0
	}
	return ru.Maxrss << 10
}

// cpuSince starts counting the CPU of the MinIO and NATS processes and of
// this one; the returned func gives each one's seconds since. A process
// that cannot be read counts zero.
func cpuSince(minioPID, natsPID int) func() (minio, nats, self float64) {
	m0, _ := procCPU(minioPID)
	n0, _ := procCPU(natsPID)
	s0 := selfCPU()
	return func() (float64, float64, float64) {
		m1, _ := procCPU(minioPID)
		n1, _ := procCPU(natsPID)
		return (m1 - m0).Seconds(), (n1 - n0).Seconds(), (selfCPU() - s0).Seconds()
	}
}
