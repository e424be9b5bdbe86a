package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

var validBucket = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

func TestBucketName(t *testing.T) {
	tests := []struct {
		test string
		seq  int64
		want string
	}{
		{"TestPut", 1, "t-testput-1"},
		{"TestPut/sub_case#01", 12, "t-testput-sub-case-01-12"},
		{"Test" + strings.Repeat("X", 100), 7, ""},
		{"Test" + strings.Repeat("a", 54) + "/" + strings.Repeat("b", 20), 123, ""},
		{"///", 3, "t--3"},
	}
	for _, tt := range tests {
		got := bucketName(tt.test, tt.seq)
		if tt.want != "" && got != tt.want {
			t.Errorf("bucketName(%q, %d) = %q, want %q", tt.test, tt.seq, got, tt.want)
		}
		if !validBucket.MatchString(got) || len(got) > 63 {
			t.Errorf("bucketName(%q, %d) = %q: not a valid bucket name", tt.test, tt.seq, got)
		}
	}
}

func TestSweepStaleMinIODirs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("telling a dead pid from a live one is implemented on Linux only")
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	// A pid that has just exited and been reaped stands for a dead test binary.
	done := exec.Command("true")
	if err := done.Run(); err != nil {
		t.Skipf("cannot run true: %v", err)
	}
	dead := done.Process.Pid
	dirs := map[string]bool{ // name -> kept
		fmt.Sprintf("%s%d-123", sharedDirPrefix, dead):        false,
		fmt.Sprintf("%s%d-456", sharedDirPrefix, os.Getpid()): true,
		sharedDirPrefix + "notapid-789":                       true,
		"unrelated-1-2":                                       true,
	}
	for name := range dirs {
		if err := os.MkdirAll(filepath.Join(tmp, name, ".minio.sys"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sweepStaleMinIODirs()
	for name, kept := range dirs {
		_, err := os.Stat(filepath.Join(tmp, name))
		if exists := err == nil; exists != kept {
			t.Errorf("%s: exists = %v, want %v", name, exists, kept)
		}
	}
}
