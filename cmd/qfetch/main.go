// Command qfetch is the operator's tool: one binary, one subcommand per job
// (runs, status, dead letters, the watermark, the preflight check, the
// simulator and a whole run in one process).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/ops"
)

// command is one subcommand. run gets the arguments after its name and
// returns when ctx ends (SIGINT/SIGTERM) or its work is done.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

// commands is the subcommand table: adding one is adding a line.
var commands = map[string]command{
	"check":     {"preflight: NATS, JetStream objects, the bucket, Qualys credentials and limits", runCheck},
	"dlq":       {"dead-lettered batches: list, show, replay, drop", runDLQ},
	"exporter":  {"serve the run-level metrics and write status.json (one always-on pod)", runExporter},
	"local":     {"run one whole qfetch run in this process: embedded NATS, the simulator, ./qfetch-data", runLocal},
	"runs":      {"the newest runs: state, batches, hosts, bytes, retries, dead letters", runRuns},
	"sim":       {"serve the Qualys API simulator (Host List, Host List Detection) for demos and tests", runSim},
	"status":    {"one run in detail; --watch follows it with a progress bar", runStatus},
	"watermark": {"show or set where the next run's window starts", runWatermark},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the named subcommand and returns the exit code: 0 done,
// 1 failed, 2 usage or configuration error, 3 a fleet-wide fault (NATS,
// the bucket or Qualys unusable), 130 interrupted.
func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-version", "--version", "version":
		app.PrintVersion(stdout, "qfetch")
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "qfetch: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	err := cmd.run(ctx, args[1:], stdout)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, ops.ErrNeedYes), errors.Is(err, ops.ErrSelection):
		fmt.Fprintf(stderr, "qfetch %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(stderr, "qfetch %s: %v\n", args[0], err)
		return app.ExitCode(err)
	}
}

// errUsage reports a command line the flag package already complained about.
var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: qfetch <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nqfetch <command> -h describes a command's flags; qfetch --version prints the version.")
}
