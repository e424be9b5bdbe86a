package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// BinDirEnv names the directory that holds the pinned tools; scripts/test sets it.
const BinDirEnv = "QFETCH_BIN_DIR"

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
	path, err := findBinary(name)
	if err != nil {
		if inCI() {
			t.Fatalf("testenv: %v", err)
		}
		t.Skipf("testenv: %v", err)
	}
	return path
}

func findBinary(name string) (string, error) {
	var tried []string
	if dir := os.Getenv(BinDirEnv); dir != "" {
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	if root, err := ModuleRoot(); err == nil {
		p := filepath.Join(root, "bin", name)
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("%s not found (looked in %s); install the pinned tools with scripts/install-tools",
		name, strings.Join(tried, ", "))
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// ModuleRoot walks up from the working directory (a test runs in its
// package's directory) to the directory holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
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
