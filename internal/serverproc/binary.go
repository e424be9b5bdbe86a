package serverproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BinDirEnv names the directory that holds the pinned tools; scripts/test sets it.
const BinDirEnv = "QFETCH_BIN_DIR"

// FindBinary returns the path of the named tool, looked up in $QFETCH_BIN_DIR,
// then in bin/ at the module root, then in PATH.
func FindBinary(name string) (string, error) {
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
// package's directory, the bench in the module's) to the directory holding
// go.mod.
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
			return "", errors.New("no go.mod above the working directory: run from the qfetch module")
		}
		dir = parent
	}
}
