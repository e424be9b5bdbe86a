// Command testreport turns the `go test -json` stream into the output of a plain
// `go test` run, then closes with counts of passed, failed and skipped tests.
//
// scripts/test pipes through it so that a human sees the usual `ok`/`FAIL` lines
// and a CI reader sees one closing "tests: N passed, N failed, N skipped" line;
// the skipped tests are listed with their reason, so a skip never hides.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action      string
	Package     string
	Test        string
	Output      string
	FailedBuild string
}

type line struct {
	test string
	text string
}

// pkgState holds a package's output until the package ends, because plain
// `go test` shows a passing package as one line and a failing one in full.
type pkgState struct {
	lines   []line
	started []string
	ended   map[string]bool
	// failed holds the tests that failed and, once a failed package ends,
	// those that never finished (a timeout or a crash ends the binary without
	// a fail event for the test that was running).
	failed map[string]bool
}

type report struct {
	out     io.Writer
	verbose bool

	pkgs map[string]*pkgState
	// lastOutput keeps each test's last output line: for a skip it is the reason.
	lastOutput map[string]string

	passed, failed, skipped int
	pkgOK, pkgFailed        int
	failures, skips         []string
}

func main() {
	verbose := flag.Bool("v", false, "print every output line as it arrives, as `go test -v` does")
	summaryFile := flag.String("summary", "", "also write the closing summary to this `file`")
	flag.Parse()
	r := newReport(os.Stdout, *verbose)
	if err := r.read(os.Stdin); err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(2)
	}
	r.summary()
	if *summaryFile != "" {
		var b strings.Builder
		r.out = &b
		r.summary()
		if err := os.WriteFile(*summaryFile, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(2)
		}
	}
	if r.failed > 0 {
		os.Exit(1)
	}
}

func newReport(out io.Writer, verbose bool) *report {
	return &report{
		out:        out,
		verbose:    verbose,
		pkgs:       map[string]*pkgState{},
		lastOutput: map[string]string{},
	}
}

func (r *report) read(in io.Reader) error {
	br := bufio.NewReader(in)
	for {
		raw, err := br.ReadBytes('\n')
		if len(raw) > 0 {
			var e event
			if jerr := json.Unmarshal(raw, &e); jerr != nil || e.Action == "" {
				// Not an event (go itself may print plain text): pass it on.
				r.write(string(raw))
			} else {
				r.handle(e)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (r *report) write(s string) {
	fmt.Fprint(r.out, s)
}

func (r *report) pkg(name string) *pkgState {
	p := r.pkgs[name]
	if p == nil {
		p = &pkgState{ended: map[string]bool{}, failed: map[string]bool{}}
		r.pkgs[name] = p
	}
	return p
}

func (r *report) handle(e event) {
	switch e.Action {
	case "build-output":
		r.write(e.Output)
		return
	case "build-fail", "start", "pause", "cont", "bench":
		return
	}
	key := e.Package + " " + e.Test
	p := r.pkg(e.Package)
	if e.Action == "run" {
		p.started = append(p.started, e.Test)
		return
	}
	if e.Action == "output" {
		if r.verbose {
			r.write(e.Output)
		}
		p.lines = append(p.lines, line{test: e.Test, text: e.Output})
		if t := strings.TrimSpace(e.Output); t != "" && e.Test != "" && !isFraming(e.Output) {
			r.lastOutput[key] = t
		}
		return
	}
	if e.Test != "" {
		p.ended[e.Test] = true
		switch e.Action {
		case "pass":
			r.passed++
		case "fail":
			r.failed++
			p.failed[e.Test] = true
			r.failures = append(r.failures, e.Package+" "+e.Test)
		case "skip":
			r.skipped++
			r.skips = append(r.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, r.lastOutput[key]))
		}
		delete(r.lastOutput, key)
		return
	}
	// The package itself has ended.
	switch e.Action {
	case "pass":
		r.pkgOK++
	case "fail":
		r.pkgFailed++
		for _, test := range p.started {
			if !p.ended[test] {
				p.failed[test] = true
				r.failed++
				r.failures = append(r.failures, e.Package+" "+test+" (did not finish)")
			}
		}
		if len(p.failed) == 0 {
			// Failed outside any test: build failure, TestMain, a timeout, a panic in init.
			why := "failed outside a test"
			if e.FailedBuild != "" {
				why = "build failed"
			}
			r.failures = append(r.failures, e.Package+" ["+why+"]")
			// Counted as a failed test so that the closing line never says
			// "0 failed" for a run that failed.
			r.failed++
		}
	}
	if !r.verbose {
		r.flush(e.Action, p)
	}
	delete(r.pkgs, e.Package)
}

// flush prints what plain `go test` prints for an ended package.
func (r *report) flush(action string, p *pkgState) {
	for _, l := range p.lines {
		if action != "fail" {
			if l.test == "" && (strings.HasPrefix(l.text, "ok") || strings.HasPrefix(l.text, "?")) {
				r.write(l.text)
			}
			continue
		}
		if l.test != "" && !p.failed[l.test] {
			continue
		}
		if isFraming(l.text) {
			continue
		}
		r.write(l.text)
	}
}

// isFraming tells the lines that test2json's implicit -v adds and plain
// `go test` does not print.
func isFraming(s string) bool {
	t := strings.TrimLeft(s, " ")
	for _, p := range []string{"=== RUN", "=== PAUSE", "=== CONT", "=== NAME", "--- PASS", "--- SKIP"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

func (r *report) summary() {
	sort.Strings(r.skips)
	sort.Strings(r.failures)
	fmt.Fprintln(r.out)
	if len(r.skips) > 0 {
		fmt.Fprintln(r.out, "skipped:")
		for _, s := range r.skips {
			fmt.Fprintln(r.out, "  "+s)
		}
	}
	if len(r.failures) > 0 {
		fmt.Fprintln(r.out, "failed:")
		for _, s := range r.failures {
			fmt.Fprintln(r.out, "  "+s)
		}
	}
	fmt.Fprintf(r.out, "packages: %d ok, %d failed\n", r.pkgOK, r.pkgFailed)
	fmt.Fprintf(r.out, "tests: %d passed, %d failed, %d skipped\n", r.passed, r.failed, r.skipped)
}
