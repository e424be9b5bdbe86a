package serverproc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModuleRootHoldsTheQfetchModule(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module github.com/qfetch/qfetch\n") {
		t.Fatalf("%s/go.mod is not qfetch's", root)
	}
}

func TestFindBinaryLooksInBinDirFirst(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("qfetch-tool-x", 0o755)
	write("qfetch-tool-plain", 0o644)
	t.Setenv(BinDirEnv, dir)
	for _, c := range []struct {
		name    string
		want    string // "" for not found
		errText string
	}{
		{name: "qfetch-tool-x", want: filepath.Join(dir, "qfetch-tool-x")},
		{name: "qfetch-tool-plain", errText: "qfetch-tool-plain not found"},
		{name: "qfetch-no-such-tool", errText: "install the pinned tools"},
	} {
		got, err := FindBinary(c.name)
		if c.want != "" {
			if err != nil || got != c.want {
				t.Errorf("FindBinary(%s) = %q, %v; want %q", c.name, got, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.errText) {
			t.Errorf("FindBinary(%s) = %q, %v; want an error saying %q", c.name, got, err, c.errText)
		}
	}
}

func TestFreePortIsFree(t *testing.T) {
	p, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if p <= 0 || p > 65535 {
		t.Fatalf("port %d", p)
	}
}

// Ports come from below the ephemeral range, where no outgoing connection
// can take them, and one process does not hand the same port out twice
// in a row.
func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := staticRange()
	if hi-lo < 1000 {
		t.Skipf("no room below the ephemeral range [%d, %d)", lo, hi)
	}
	seen := map[int]bool{}
	for range 50 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if p < lo || p >= hi {
			t.Fatalf("port %d outside [%d, %d)", p, lo, hi)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice in 50 calls", p)
		}
		seen[p] = true
	}
}
