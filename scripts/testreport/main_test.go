package main

import (
	"os"
	"strings"
	"testing"
)

// testdata/mixed.json is `go test -json ./...` over four packages: tr/a passes
// (with a log line, a subtest and a skip), tr/b has a failing test, tr/c does
// not build and tr/d has no tests.
func TestReport(t *testing.T) {
	stream, err := os.ReadFile("testdata/mixed.json")
	if err != nil {
		t.Fatal(err)
	}
	// testdata/timeout.json: tr2/h has TestFirstFails failing, then TestHangs
	// running into -timeout=2s, which ends the binary with no event for it.
	timeout, err := os.ReadFile("testdata/timeout.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      string
		verbose bool
		want    []string
		notWant []string
		counts  [3]int // passed, failed, skipped
	}{
		{
			name: "plain",
			in:   string(stream),
			want: []string{
				"ok  \ttr/a",
				"want 1, got 2",
				"--- FAIL: TestBad",
				"FAIL\ttr/b",
				"undefined: undefined",
				"FAIL\ttr/c [build failed]",
				"?   \ttr/d\t[no test files]",
				"tr/a TestSkip: a_test.go:5: no minio here",
				"tr/c [build failed]",
				"packages: 1 ok, 2 failed\n",
				"tests: 4 passed, 2 failed, 1 skipped\n",
			},
			// Passing tests' logs and the -v framing stay hidden, as in plain go test.
			notWant: []string{"noise", "quiet", "=== RUN", "--- PASS"},
			counts:  [3]int{4, 2, 1},
		},
		{
			name:    "verbose",
			in:      string(stream),
			verbose: true,
			want:    []string{"noise", "quiet", "=== RUN   TestOK", "--- PASS: TestSub/x"},
			counts:  [3]int{4, 2, 1},
		},
		{
			name: "a test cut short by a timeout",
			in:   string(timeout),
			want: []string{
				"boom",
				"before hang",
				"panic: test timed out after 2s",
				"FAIL\ttr2/h",
				"tr2/h TestHangs (did not finish)",
				"tests: 0 passed, 2 failed, 0 skipped\n",
			},
			counts: [3]int{0, 2, 0},
		},
		{
			name:   "plain text passes through",
			in:     "go: downloading example.com/m v1.0.0\n",
			want:   []string{"go: downloading example.com/m v1.0.0\n", "tests: 0 passed, 0 failed, 0 skipped\n"},
			counts: [3]int{0, 0, 0},
		},
		{
			name:   "last line without newline",
			in:     `{"Action":"pass","Package":"p","Test":"TestA"}`,
			want:   []string{"tests: 1 passed, 0 failed, 0 skipped\n"},
			counts: [3]int{1, 0, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			r := newReport(&out, tt.verbose)
			if err := r.read(strings.NewReader(tt.in)); err != nil {
				t.Fatal(err)
			}
			r.summary()
			got := out.String()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("output lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("output has %q:\n%s", w, got)
				}
			}
			if c := [3]int{r.passed, r.failed, r.skipped}; c != tt.counts {
				t.Errorf("counts (passed, failed, skipped) = %v, want %v", c, tt.counts)
			}
			if !strings.HasSuffix(got, "skipped\n") {
				t.Errorf("the counts are not the closing line:\n%s", got)
			}
		})
	}
}
