package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/runstat"
)

// The operator commands read QFETCH_NATS_* (and, for check, everything the
// worker reads) like the binaries do.

func newFlags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("qfetch "+name, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), usage); fs.PrintDefaults() }
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	return nil
}

func output(stdout io.Writer, asJSON bool) ops.Output {
	f, ok := stdout.(*os.File)
	return ops.Output{W: stdout, JSON: asJSON, TTY: ok && logging.IsTerminal(f)}
}

// openQueue connects to NATS and binds to qfetch's objects without
// creating or changing any.
func openQueue(ctx context.Context) (app.JetStream, func(), error) {
	var s struct{ NATS config.NATS }
	if err := app.LoadConfig(&s); err != nil {
		return app.JetStream{}, nil, err
	}
	log, err := app.Logger(config.Log{Level: "error"})
	if err != nil {
		return app.JetStream{}, nil, err
	}
	nc, js, err := app.Connect(s.NATS, "qfetch-ops", log)
	if err != nil {
		return app.JetStream{}, nil, err
	}
	q, err := app.Open(ctx, js)
	if err != nil {
		nc.Close()
		return app.JetStream{}, nil, err
	}
	return q, nc.Close, nil
}

// validRun checks a run ID from the command line before it becomes part of
// a subject ("*" or ">" would select every run).
func validRun(id string, emptyOK bool) bool {
	return (emptyOK && id == "") || msg.ValidRunID(id)
}

func operator() string {
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, _ := os.Hostname()
	return user + "@" + host
}

const runsUsage = `usage: qfetch runs [flags]

Lists the newest runs: state (planning, fetching, completing, complete,
failed, stale, accepted-incomplete), window, batches done/planned, hosts,
bytes, retries, dead letters and age.

flags:
`

func runRuns(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("runs", runsUsage)
	n := fs.Int("n", 10, "how many runs")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	q, done, err := openQueue(ctx)
	if err != nil {
		return err
	}
	defer done()
	return ops.Runs(ctx, q, runstat.Config{}, *n, output(stdout, *asJSON))
}

const statusUsage = `usage: qfetch status [flags] [RUN]

Shows one run (the newest without RUN) in detail; --watch then follows it
with a progress line until it completes or fails.

flags:
`

func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("status", statusUsage)
	watch := fs.Bool("watch", false, "follow the run until it ends")
	every := fs.Duration("every", 2*time.Second, "refresh period with --watch")
	asJSON := fs.Bool("json", false, "print JSON (one object per refresh with --watch)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 || *every <= 0 || !validRun(fs.Arg(0), true) {
		fs.Usage()
		return errUsage
	}
	q, done, err := openQueue(ctx)
	if err != nil {
		return err
	}
	defer done()
	return ops.Status(ctx, q, runstat.Config{}, fs.Arg(0), *watch, *every, output(stdout, *asJSON))
}

const dlqUsage = `usage: qfetch dlq list [--run RUN] [--json]
       qfetch dlq show SEQ [--json]
       qfetch dlq replay (SEQ... | --run RUN | --all)
       qfetch dlq drop --yes [--reason TEXT] (SEQ... | --run RUN | --all)

Dead-lettered batches, with the reason and the last error. replay puts them
back on the work queue (same run, same keys) so the run can still complete;
drop removes them for good and marks their run accepted-incomplete (the
watermark stays, so the next run asks for those hosts again).

flags:
`

func runDLQ(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, dlqUsage)
		return errUsage
	}
	verb := args[0]
	fs := newFlags("dlq "+verb, dlqUsage)
	run := fs.String("run", "", "the dead letters of this run")
	all := fs.Bool("all", false, "every dead letter (replay, drop)")
	asJSON := fs.Bool("json", false, "print JSON")
	yes := fs.Bool("yes", false, "really drop")
	reason := fs.String("reason", "", "why (drop; kept in the run record)")
	by := fs.String("by", operator(), "who (drop)")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	var seqs []uint64
	for _, a := range fs.Args() {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			fmt.Fprintf(os.Stderr, "qfetch dlq %s: %q is not a dead letter's sequence (see qfetch dlq list)\n", verb, a)
			return errUsage
		}
		seqs = append(seqs, n)
	}
	if !validRun(*run, true) {
		fmt.Fprintf(os.Stderr, "qfetch dlq %s: --run %q is not a run ID (see qfetch runs)\n", verb, *run)
		return errUsage
	}
	switch verb {
	case "list", "show", "replay", "drop":
	default:
		fmt.Fprint(os.Stderr, dlqUsage)
		return errUsage
	}
	q, done, err := openQueue(ctx)
	if err != nil {
		return err
	}
	defer done()
	out := output(stdout, *asJSON)
	sel := ops.Selection{Seqs: seqs, Run: *run, All: *all}
	switch verb {
	case "list":
		return ops.DLQList(ctx, q, *run, out)
	case "show":
		if len(seqs) != 1 {
			fmt.Fprint(os.Stderr, dlqUsage)
			return errUsage
		}
		return ops.DLQShow(ctx, q, seqs[0], out)
	case "replay":
		return ops.DLQReplay(ctx, q, sel, out)
	default:
		return ops.DLQDrop(ctx, q, sel, *by, *reason, *yes, out)
	}
}

const watermarkUsage = `usage: qfetch watermark show [--json]
       qfetch watermark set --yes --time RFC3339 --reason TEXT [--by WHO]

The watermark is where the next run's window starts (minus the overlap): the
end of the last completed run. set moves it, backwards too, and records who
and why in its history.

flags:
`

func runWatermark(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "set") {
		fmt.Fprint(os.Stderr, watermarkUsage)
		return errUsage
	}
	verb := args[0]
	fs := newFlags("watermark "+verb, watermarkUsage)
	asJSON := fs.Bool("json", false, "print JSON")
	at := fs.String("time", "", "new watermark, RFC 3339 (set)")
	reason := fs.String("reason", "", "why (set; required)")
	by := fs.String("by", operator(), "who (set)")
	yes := fs.Bool("yes", false, "really set")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	var t time.Time
	if verb == "set" {
		var err error
		if t, err = time.Parse(time.RFC3339, *at); err != nil {
			fmt.Fprintf(os.Stderr, "qfetch watermark set: --time %q is not RFC 3339 (2026-01-02T15:04:05Z)\n", *at)
			return errUsage
		}
		// Usage errors like a missing --yes (exit 2), found before NATS is
		// dialled.
		if *reason == "" {
			fmt.Fprintln(os.Stderr, "qfetch watermark set: say why with --reason: it is kept in the watermark's history")
			return errUsage
		}
		if *by == "" {
			fmt.Fprintln(os.Stderr, "qfetch watermark set: say who with --by")
			return errUsage
		}
	}
	q, done, err := openQueue(ctx)
	if err != nil {
		return err
	}
	defer done()
	out := output(stdout, *asJSON)
	if verb == "show" {
		return ops.WatermarkShow(ctx, q, out)
	}
	return ops.WatermarkSet(ctx, q, t, *by, *reason, *yes, out)
}

const checkUsage = `usage: qfetch check [--json]

Preflight for an installation, with the workers' configuration (QFETCH_*):
NATS and JetStream, qfetch's streams and consumer, the bucket (a probe
object is written and deleted), the Qualys credentials and limits. One line
per check; exit status 1 when any failed.

flags:
`

func runCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("check", checkUsage)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Each section is loaded on its own, so that a missing Qualys setting
	// still lets NATS and the bucket be checked.
	cfg := ops.CheckConfig{}
	var errs []error
	var n struct {
		NATS config.NATS
		config.Fleet
	}
	if err := app.LoadConfig(&n); err != nil {
		return err
	}
	cfg.NATSURL, cfg.NATSCreds = n.NATS.URL, n.NATS.CredsFile
	cfg.Queue = msg.Config{StreamReplicas: n.NATS.StreamReplicas, MaxInFlight: n.MaxInFlight}
	var w struct{ Worker config.Worker }
	if err := app.LoadConfig(&w); err != nil {
		errs = append(errs, err)
	} else {
		cfg.Queue.AckWait = w.Worker.AckWait
	}
	var s struct{ S3 config.S3 }
	if err := app.LoadConfig(&s); err != nil {
		errs = append(errs, err)
	} else if store, err := app.S3(s.S3, 0); err != nil {
		errs = append(errs, err)
	} else {
		cfg.Store, cfg.Prefix = store, s.S3.Prefix
	}
	var qs struct{ Qualys config.Qualys }
	if err := app.LoadConfig(&qs); err != nil {
		errs = append(errs, err)
	} else if api, err := app.Qualys(qs.Qualys); err != nil {
		errs = append(errs, err)
	} else {
		cfg.API = api
	}
	for _, err := range errs {
		fmt.Fprintln(os.Stderr, err)
	}
	_, err := ops.Check(ctx, cfg, output(stdout, *asJSON))
	if err == nil && len(errs) > 0 {
		err = errors.Join(errs...)
	}
	return err
}
