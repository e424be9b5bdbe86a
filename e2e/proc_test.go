package e2e

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/serverproc"
)

// stopGrace is how long a process gets after SIGTERM before SIGKILL.
const stopGrace = 15 * time.Second

// logTail is how much of a process's log a failed test prints.
const logTail = 6 << 10

// bins are the binaries under test.
type bins struct {
	Planner, Worker, QFetch string
}

// buildBinaries builds cmd/planner, cmd/worker and cmd/qfetch into dir
// (the build cache makes a rebuild take seconds). Planner and worker get
// -race when this test binary has it; the simulator never does: it is the
// harness, and the busiest process.
func buildBinaries(t *testing.T, dir string) bins {
	t.Helper()
	var race []string
	if raceEnabled {
		race = []string{"-race"}
	}
	goBuild(t, dir, race, "./cmd/planner", "./cmd/worker")
	goBuild(t, dir, nil, "./cmd/qfetch")
	return bins{
		Planner: filepath.Join(dir, "planner"),
		Worker:  filepath.Join(dir, "worker"),
		QFetch:  filepath.Join(dir, "qfetch"),
	}
}

// goBuild builds pkgs (module paths like ./cmd/worker) with the extra build
// flags into dir, from the module root.
func goBuild(t *testing.T, dir string, flags []string, pkgs ...string) {
	t.Helper()
	root, err := serverproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := goTool()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{"build", "-o", dir + string(filepath.Separator)}, flags...), pkgs...)
	cmd := exec.Command(gobin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// goTool finds the go command: in PATH, else next to the one that runs
// these tests (go test puts its own GOROOT/bin first in the children's
// PATH; see go help test), so that is where it is found.
func goTool() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	return "", errors.New("no go command in PATH")
}

// proc is one child process. Its stdout and stderr go to one log file
// under the test's TempDir, printed (the end of it) when the test fails.
type proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	log  string

	done chan struct{} // closed when the process has exited and been reaped
}

// startProc starts bin with args and exactly env (nothing is inherited but
// PATH, HOME and TMPDIR: a developer's QFETCH_* must not leak in). It is
// stopped, if still running, when the test ends.
func startProc(t testing.TB, name, bin string, args, env []string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	// Owned by p: every stop waits for done.
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			t.Logf("--- %s (pid %d) log, last %d bytes:\n%s", name, cmd.Process.Pid, logTail, p.tail(logTail))
		}
		if strings.Contains(p.Log(), "WARNING: DATA RACE") {
			t.Errorf("%s: the race detector reported a data race; log:\n%s", name, p.tail(64<<10))
		}
	})
	return p
}

// Pid is the process ID.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode waits up to timeout for the process to end and returns its exit
// code (-1 when a signal ended it).
func (p *proc) ExitCode(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s (pid %d) still running after %v", p.name, p.Pid(), timeout)
	}
}

// Wait fails the test unless the process ends within timeout with want.
func (p *proc) Wait(timeout time.Duration, want int) {
	p.t.Helper()
	code, err := p.ExitCode(timeout)
	if err != nil {
		p.t.Fatal(err)
	}
	if code != want {
		p.t.Fatalf("%s exited with %d, want %d; log:\n%s", p.name, code, want, p.tail(logTail))
	}
}

// Stop sends SIGTERM, then SIGKILL if the process outlives stopGrace, and
// waits for it. It signals this process's PID only.
func (p *proc) Stop() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v; killed", p.name, p.Pid(), stopGrace)
	}
}

// Kill ends the process with SIGKILL, as a crash or an OOM kill would, and
// waits for it.
func (p *proc) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Log returns the process's output so far.
func (p *proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func (p *proc) tail(n int) string {
	s := p.Log()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// freePort returns a port that was free a moment ago on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	p, err := serverproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
