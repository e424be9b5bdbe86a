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
		{[]string{"sim", "--hosts", "-5"}, 1},
		{[]string{"sim", "--fault", "boom=0.1"}, 1},
	} {
		var out, errs strings.Builder
		if got := dispatch(context.Background(), tc.args, &out, &errs); got != tc.code {
			t.Errorf("qfetch %v: exit %d, want %d (stderr %q)", tc.args, got, tc.code, errs.String())
		}
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
