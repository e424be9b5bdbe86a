package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Identity is what a binary is: the stamped version, the VCS revision the
// go command recorded, and the Go toolchain it was built with.
type Identity struct {
	Version, Revision, GoVersion string
}

// BuildInfo returns this binary's Identity. The revision is the stamped
// Revision, else the go command's VCS stamp; a build with neither says
// "unknown" rather than guessing.
func BuildInfo() Identity {
	return buildOf(Version, Revision, debug.ReadBuildInfo)
}

func buildOf(version, stamped string, read func() (*debug.BuildInfo, bool)) Identity {
	b := Identity{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	if stamped != "" {
		b.Revision = stamped
		return b
	}
	info, ok := read()
	if !ok {
		return b
	}
	var rev string
	var dirty bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		b.Revision = rev
		if dirty {
			b.Revision += "-dirty"
		}
	}
	return b
}

// PrintVersion writes the --version text of the binary called name.
func PrintVersion(w io.Writer, name string) {
	b := BuildInfo()
	fmt.Fprintf(w, "%s %s\n  revision %s\n  go       %s\n", name, b.Version, b.Revision, b.GoVersion)
}

// BuildAttr is the build identity for a process's start line.
func BuildAttr() slog.Attr {
	b := BuildInfo()
	return slog.Group("build", slog.String("version", b.Version), slog.String("revision", b.Revision),
		slog.String("go", b.GoVersion))
}

// RegisterBuildInfo registers qfetch_build_info (always 1) on r, so a
// dashboard can say which version each pod runs.
func RegisterBuildInfo(r prometheus.Registerer) {
	b := BuildInfo()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "qfetch_build_info",
		Help:        "Always 1; the labels say which build this process runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	g.Set(1)
	r.MustRegister(g)
}

// ExitCodesHelp is the exit-code table of the planner's and worker's usage
// texts (README, "Exit codes").
const ExitCodesHelp = `exit codes:
  0    done, or nothing to do
  1    the run failed (retries spent or a permanent error)
  2    configuration missing or invalid, or a bad command line
  3    fleet-wide fault an operator must fix (Qualys credentials, bucket, S3 credentials or reach, NATS)
  130  interrupted
`

// Args handles the command line of a binary configured only by the
// environment (planner, worker), before it loads configuration or touches
// anything: help and --version print and say exit, anything else is a
// usage error. exit reports whether main should exit with code now.
func Args(name, usage string, args []string, stdout, stderr io.Writer) (code int, exit bool) {
	if len(args) > 0 && args[0] == "help" {
		args = []string{"-help"}
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the messages below replace the flag package's
	version := fs.Bool("version", false, "print the version and exit")
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return ExitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v; see %s --help\n", name, err, name)
		return ExitConfig, true
	case fs.NArg() > 0:
		fmt.Fprintf(stderr, "%s: unexpected argument %q (configuration comes from QFETCH_* variables); see %s --help\n",
			name, fs.Arg(0), name)
		return ExitConfig, true
	case *version:
		PrintVersion(stdout, name)
		return ExitOK, true
	}
	return ExitOK, false
}
