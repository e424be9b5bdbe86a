package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestDispatchExitCodes(t *testing.T) {
	// A command that dialled NATS would fail otherwise (3), not with a
	// usage error.
	t.Setenv("QFETCH_NATS_URL", "nats://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"nope"}, 2},
		{[]string{"help"}, 0},
		{[]string{"-h"}, 0},
		{[]string{"--help"}, 0},
		{[]string{"--version"}, 0},
		{[]string{"version"}, 0},
		{[]string{"sim", "-h"}, 0},
		{[]string{"sim", "--bogus"}, 2},
		{[]string{"sim", "extra"}, 2},
		{[]string{"sim", "--hosts", "-5"}, 2},
		{[]string{"sim", "--fault", "boom=0.1"}, 2},
		// Usage errors, found before NATS is dialled (README, "Exit codes").
		{[]string{"watermark", "set", "--yes", "--time", "2026-01-02T15:04:05Z"}, 2},
		{[]string{"watermark", "set", "--yes", "--time", "2026-01-02T15:04:05Z", "--reason", "x", "--by", ""}, 2},
	} {
		var out, errs strings.Builder
		if got := dispatch(context.Background(), tc.args, &out, &errs); got != tc.code {
			t.Errorf("qfetch %v: exit %d, want %d (stderr %q)", tc.args, got, tc.code, errs.String())
		}
	}
}

// TestLocalBadFlags: every bad value of qfetch local is a configuration
// error (exit 2) with one line naming the flag, and no run starts.
func TestLocalBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		qualysURL  string
		flag, want string
	}{
		{[]string{"--faults", "2"}, "", "--faults", "between 0 and 1, got 2"},
		{[]string{"--faults", "-1"}, "", "--faults", "between 0 and 1, got -1"},
		{[]string{"--faults", "NaN"}, "", "--faults", "between 0 and 1"},
		{[]string{"--hosts", "-5"}, "", "--hosts", "1 or more, got -5"},
		{[]string{"--hosts", "0"}, "", "--hosts", "1 or more, got 0"},
		{[]string{"--batch-size", "0"}, "", "--batch-size", "between 1 and 10000, got 0"},
		{[]string{"--batch-size", "20000"}, "", "--batch-size", "between 1 and 10000, got 20000"},
		{[]string{"--slots", "0"}, "", "--slots", "1 or more, got 0"},
		{[]string{"--page-size", "-1"}, "", "--page-size", "0 or more, got -1"},
		{[]string{"--overlap", "-1s"}, "", "--overlap", "0 or more, got -1s"},
		{[]string{"--hosts", "100"}, "https://qualysapi.example.com", "--hosts", "only applies to the simulator"},
		{[]string{"--faults", "0.1"}, "https://qualysapi.example.com", "--faults", "only applies to the simulator"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Setenv("QFETCH_QUALYS_URL", tc.qualysURL)
			var out, errs strings.Builder
			args := append([]string{"local", "--dir", t.TempDir()}, tc.args...)
			if got := dispatch(context.Background(), args, &out, &errs); got != 2 {
				t.Errorf("exit %d, want 2 (stderr %q)", got, errs.String())
			}
			line := tc.flag + ": must be " + tc.want
			if strings.HasPrefix(tc.want, "only") {
				line = tc.flag + ": " + tc.want
			}
			if !strings.Contains(errs.String(), line) {
				t.Errorf("stderr %q does not say %q", errs.String(), line)
			}
			if strings.Contains(errs.String(), "goroutine") {
				t.Errorf("stack trace on stderr: %q", errs.String())
			}
			if out.Len() != 0 {
				t.Errorf("stdout %q, want nothing", out.String())
			}
		})
	}
}

// TestSimServesUntilCancelled starts `qfetch sim` as main would, reads the
// URL and credentials it prints, calls the API with them, and stops it.
// TestDispatchHelpAndVersion: help and the version go to stdout, a bad
// command line to stderr.
func TestDispatchHelpAndVersion(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		out, errs string
	}{
		{[]string{"--help"}, "usage: qfetch", ""},
		{[]string{"-h"}, "usage: qfetch", ""},
		{[]string{"help"}, "usage: qfetch", ""},
		{[]string{"--version"}, "qfetch " + app.Version + "\n", ""},
		{[]string{"version"}, runtime.Version(), ""},
		{nil, "", "usage: qfetch"},
		{[]string{"nope"}, "", `unknown command "nope"`},
	} {
		var out, errs strings.Builder
		dispatch(context.Background(), tc.args, &out, &errs)
		for _, c := range []struct{ got, want string }{{out.String(), tc.out}, {errs.String(), tc.errs}} {
			if (c.want == "") != (c.got == "") || !strings.Contains(c.got, c.want) {
				t.Errorf("qfetch %q: wrote %q, want it to contain %q", tc.args, c.got, c.want)
			}
		}
	}
}

func TestSimServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		var errs strings.Builder
		done <- dispatch(ctx, []string{"sim", "--hosts", "1000", "--seed", "3", "--faults", "0"}, pw, &errs)
		pw.Close()
	}()
	vars := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(vars) < 3 && sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok && strings.HasPrefix(k, "QFETCH_") {
			vars[k] = v
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	base, user, pass := vars["QFETCH_QUALYS_URL"], vars["QFETCH_QUALYS_USERNAME"], vars["QFETCH_QUALYS_PASSWORD"]
	if !strings.HasPrefix(base, "http://127.0.0.1:") || user == "" || len(pass) < 16 {
		t.Fatalf("printed %v", vars)
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/api/2.0/fo/asset/host/?action=list&details=None&truncation_limit=5", nil)
	req.SetBasicAuth(user, pass)
	req.Header.Set("X-Requested-With", "test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<ID_SET>") {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d after cancel", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("qfetch sim did not stop")
	}
}
