package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// stampedVersion is what TestBinariesAnswerHelpAndVersion stamps with -ldflags, as the image does.
const stampedVersion = "v9.9.9-test"

// TestBinariesAnswerHelpAndVersion runs every binary with --help, -h,
// --version and a bogus flag in a deployment's environment whose every
// address is unreachable: each must answer at once, on the right stream
// with the right code, without opening a run or starting a worker.
func TestBinariesAnswerHelpAndVersion(t *testing.T) {
	dir := t.TempDir()
	goBuild(t, dir, []string{"-ldflags", "-X github.com/qfetch/qfetch/internal/app.Version=" + stampedVersion},
		"./cmd/planner", "./cmd/worker", "./cmd/qfetch")

	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range map[string]string{
		"QFETCH_QUALYS_URL":      "https://127.0.0.1:1",
		"QFETCH_QUALYS_USERNAME": "user",
		"QFETCH_QUALYS_PASSWORD": "password-0123456789",
		"QFETCH_NATS_URL":        "nats://127.0.0.1:1",
		"QFETCH_S3_ENDPOINT":     "127.0.0.1:1",
		"QFETCH_S3_BUCKET":       "qfetch",
		"QFETCH_S3_ACCESS_KEY":   "access",
		"QFETCH_S3_SECRET_KEY":   "secret-0123456789",
		"QFETCH_WORKER_LISTEN":   "127.0.0.1:1",
	} {
		env = append(env, k+"="+v)
	}

	usage := map[string]string{"planner": "usage: planner", "worker": "usage: worker", "qfetch": "usage: qfetch"}
	for _, bin := range []string{"planner", "worker", "qfetch"} {
		for _, tc := range []struct {
			arg       string
			code      int
			out, errs []string // substrings; nil wants the stream empty
		}{
			{"--help", 0, []string{usage[bin]}, nil},
			{"-h", 0, []string{usage[bin]}, nil},
			{"--version", 0, []string{bin + " " + stampedVersion, runtime.Version(), "revision "}, nil},
			{"--bogus", 2, nil, []string{"-bogus"}},
		} {
			t.Run(bin+" "+tc.arg, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, filepath.Join(dir, bin), tc.arg)
				cmd.Env = env
				var stdout, stderr bytes.Buffer
				cmd.Stdout, cmd.Stderr = &stdout, &stderr
				err := cmd.Run()
				if ctx.Err() != nil {
					t.Fatalf("%s %s still running after 20s: it did not answer at once", bin, tc.arg)
				}
				code := 0
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					code = exit.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if code != tc.code {
					t.Errorf("exit %d, want %d\nstdout %q\nstderr %q", code, tc.code, stdout.String(), stderr.String())
				}
				for _, s := range []struct {
					name, got string
					want      []string
				}{{"stdout", stdout.String(), tc.out}, {"stderr", stderr.String(), tc.errs}} {
					if len(s.want) == 0 && s.got != "" {
						t.Errorf("%s: %q, want nothing", s.name, s.got)
					}
					if len(s.want) > 0 && s.got == "" {
						t.Errorf("%s empty, want %q", s.name, s.want)
					}
					for _, w := range s.want {
						if !strings.Contains(s.got, w) {
							t.Errorf("%s %q lacks %q", s.name, s.got, w)
						}
					}
				}
				if tc.code == 2 && bin != "qfetch" && !strings.Contains(stderr.String(), "see "+bin+" --help") {
					t.Errorf("stderr %q does not point at --help", stderr.String())
				}
			})
		}
	}
}
