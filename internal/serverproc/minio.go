package serverproc

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// minioReadyTimeout is generous: on a loaded 2-core machine a cold start
	// is seconds, while an idle one answers in about half a second.
	minioReadyTimeout = 60 * time.Second
	minioStopGrace    = 10 * time.Second
)

// MinIO is one MinIO server process serving a data directory on 127.0.0.1.
// Its port and credentials stay the same across Stop and Start, so a test
// can take S3 away mid-run and bring it back with its objects intact.
type MinIO struct {
	Binary    string
	Dir       string
	Endpoint  string // host:port
	AccessKey string
	SecretKey string

	echo io.Writer // gets each redacted output line; nil: none

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited
	logs *redactingLog
}

// StartMinIO starts binary as a MinIO server on dir (created if missing), on
// a free 127.0.0.1 port with freshly generated root credentials, and returns
// once it answers its health check. echo, when not nil, gets the server's
// output line by line with the secret key redacted. The caller must Stop it.
func StartMinIO(binary, dir string, echo io.Writer) (*MinIO, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("minio data dir: %w", err)
	}
	var lastErr error
	// A free port found here may be taken by someone else before MinIO binds
	// it; a few fresh tries make that race harmless.
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		p := &MinIO{
			Binary:    binary,
			Dir:       dir,
			Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			AccessKey: "qfetch-" + strings.ToLower(rand.Text()[:10]),
			SecretKey: rand.Text(),
			echo:      echo,
		}
		if lastErr = p.Start(); lastErr == nil {
			return p, nil
		}
	}
	return nil, lastErr
}

// Start starts a stopped process again, on the same port, credentials and
// data directory, and waits until it is ready.
func (p *MinIO) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running() {
		return fmt.Errorf("minio on %s: already running", p.Endpoint)
	}
	p.logs = newRedactingLog(p.SecretKey, p.echo)
	cmd := exec.Command(p.Binary, "server", "--quiet", "--anonymous", "--address", p.Endpoint, p.Dir)
	cmd.Env = minioEnv(p.AccessKey, p.SecretKey)
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("minio on %s: %w", p.Endpoint, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	// Owned by the process: Stop and Kill wait for done. The exit status is
	// of no interest: a stop is ours, and an early exit shows in the logs.
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := waitMinIOReady(p.Endpoint, done); err != nil {
		p.signalAndWait(syscall.SIGKILL, 0)
		return fmt.Errorf("minio on %s: %w; output:\n%s", p.Endpoint, err, p.logs.String())
	}
	return nil
}

// Stop ends the process gracefully (SIGTERM, then SIGKILL after a grace
// period) and waits for it. Stopping a stopped process does nothing.
func (p *MinIO) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalAndWait(syscall.SIGTERM, minioStopGrace)
}

// Kill ends the process at once, as a crash would, and waits for it.
func (p *MinIO) Kill() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.signalAndWait(syscall.SIGKILL, 0)
}

// Restart is Stop then Start.
func (p *MinIO) Restart() error {
	if err := p.Stop(); err != nil {
		return err
	}
	return p.Start()
}

// Running reports whether the process is alive.
func (p *MinIO) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running()
}

// PID is the process's id while it runs, for measuring it; 0 otherwise.
func (p *MinIO) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Logs returns the end of the process's output, with the secret key redacted.
func (p *MinIO) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.logs == nil {
		return ""
	}
	return p.logs.String()
}

// Client returns a new S3 client for the process, as its root user.
func (p *MinIO) Client() (*minio.Client, error) {
	return minio.New(p.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(p.AccessKey, p.SecretKey, ""),
		Secure: false,
		Region: "us-east-1",
	})
}

// running is called with mu held.
func (p *MinIO) running() bool { return alive(p.done) }

// signalAndWait is called with mu held; it releases mu while it waits so the
// waiting goroutine can record the exit.
func (p *MinIO) signalAndWait(sig syscall.Signal, grace time.Duration) error {
	if !p.running() {
		return nil
	}
	done, proc := p.done, p.cmd.Process
	p.mu.Unlock()
	defer p.mu.Lock()
	if !stopProcess(proc, done, sig, grace) {
		return fmt.Errorf("minio on %s: did not stop within %v of SIGTERM; killed", p.Endpoint, grace)
	}
	return nil
}

// alive reports whether the process whose exit closes done is running;
// nil: none was started.
func alive(done <-chan struct{}) bool {
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// stopProcess sends proc sig and waits until done closes; with a grace
// period it kills proc once that has passed, and then reports false.
func stopProcess(proc *os.Process, done <-chan struct{}, sig syscall.Signal, grace time.Duration) bool {
	_ = proc.Signal(sig)
	if grace > 0 {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-done:
			return true
		case <-timer.C:
			_ = proc.Kill()
			<-done
			return false
		}
	}
	<-done
	return true
}

// minioEnv is the environment of a MinIO process: the caller's, less any
// MINIO_ settings a developer may have, plus settings that keep it quiet and
// light.
func minioEnv(user, password string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MINIO_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"MINIO_ROOT_USER="+user,
		"MINIO_ROOT_PASSWORD="+password,
		"MINIO_BROWSER=off", // no web console, no second port
		"MINIO_UPDATE=off",  // never look for updates
		"MINIO_CALLHOME_ENABLE=off",
		"MINIO_CI_CD=1",               // a data dir on the root disk is fine; deletes purge at once
		"MINIO_SCANNER_SPEED=slowest", // background scanner stays out of the way
	)
}

// waitMinIOReady polls the liveness endpoint until MinIO answers 200 with its
// object layer up (before that it marks the answer "offline").
func waitMinIOReady(endpoint string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + endpoint + "/minio/health/live"
	deadline := time.NewTimer(minioReadyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("health check answered %s", resp.Status)
			case resp.Header.Get("X-Minio-Server-Status") == "offline":
				err = errors.New("health check: object layer not initialised yet")
			default:
				return nil
			}
		}
		last = err
		select {
		case <-exited:
			return errors.New("exited before it was ready")
		case <-deadline.C:
			return fmt.Errorf("not ready within %v: %w", minioReadyTimeout, last)
		case <-tick.C:
		}
	}
}
