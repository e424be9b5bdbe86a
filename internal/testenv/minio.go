package testenv

import (
	"context"
	"io"
	"os"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/serverproc"
)

// MinIOProcess is one MinIO server process serving a data directory on
// 127.0.0.1; see serverproc.MinIO.
type MinIOProcess = serverproc.MinIO

// DedicatedMinIO starts a MinIO process owned by this test alone, with its
// data in t.TempDir(); it is stopped when the test ends. Use it when the test
// stops or restarts MinIO; otherwise MinIO shares one process per package.
func DedicatedMinIO(t testing.TB) *MinIOProcess {
	t.Helper()
	bin := MinIOBinary(t)
	p, err := StartMinIO(bin, t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("testenv: %v", err)
		}
	})
	return p
}

// StartMinIO starts binary as a MinIO server on dir (created if missing), on
// a free 127.0.0.1 port with freshly generated root credentials, and returns
// once it answers its health check. The caller must Stop it. Under
// QFETCH_TEST_VERBOSE its output goes to stderr too.
func StartMinIO(binary, dir string) (*MinIOProcess, error) {
	var echo io.Writer
	if verbose() {
		echo = os.Stderr
	}
	return serverproc.StartMinIO(binary, dir, echo)
}

// ctxTimeout is the budget of one call the helpers make to a server.
func ctxTimeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}
