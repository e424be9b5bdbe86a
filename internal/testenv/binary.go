package testenv

import (
	"os"
	"strconv"
	"testing"

	"github.com/qfetch/qfetch/internal/serverproc"
)

// BinDirEnv names the directory that holds the pinned tools; scripts/test sets it.
const BinDirEnv = serverproc.BinDirEnv

// VerboseEnv, when true, lets the servers started here log to stderr.
const VerboseEnv = "QFETCH_TEST_VERBOSE"

// NATSBinary returns the path of the nats-server binary for multi-process tests.
func NATSBinary(t testing.TB) string {
	t.Helper()
	return Binary(t, "nats-server")
}

// MinIOBinary returns the path of the minio binary.
func MinIOBinary(t testing.TB) string {
	t.Helper()
	return Binary(t, "minio")
}

// Binary returns the path of the named tool, looked up in $QFETCH_BIN_DIR,
// then in bin/ at the module root, then in PATH. A missing tool fails the test
// under CI (where it must be there) and skips it elsewhere.
func Binary(t testing.TB, name string) string {
	t.Helper()
	path, err := serverproc.FindBinary(name)
	if err != nil {
		if inCI() {
			t.Fatalf("testenv: %v", err)
		}
		t.Skipf("testenv: %v", err)
	}
	return path
}

func inCI() bool {
	return envBool("CI")
}

func verbose() bool {
	return envBool(VerboseEnv)
}

func envBool(name string) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	return err == nil && v
}
