package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/runstat"
)

// The operator commands read QFETCH_NATS_* (and, for check, everything the
// worker reads) like the binaries do, or with --local the store that
// earlier `qfetch local` runs kept.

func output(stdout io.Writer, asJSON bool) ops.Output {
	f, ok := stdout.(*os.File)
	return ops.Output{W: stdout, JSON: asJSON, TTY: ok && logging.IsTerminal(f)}
}

// openLocal opens the kept store of `qfetch local` runs; a variable so that
// the tests see what --local asks for.
var openLocal = local.Open

// source is where an operator command reads qfetch's JetStream objects:
// the NATS that QFETCH_NATS_* names, or with --local[=DIR] the store of
// earlier `qfetch local` runs.
type source struct {
	dir  string
	flag *pflag.Flag
}

func (s *source) addFlag(fs *pflag.FlagSet) {
	def := local.DefaultDir()
	fs.StringVar(&s.dir, "local", "", "read the runs qfetch local kept in `DIR` instead of QFETCH_NATS_* (--local alone: "+def+")")
	s.flag = fs.Lookup("local")
	// --local alone means the default directory; a directory must then be
	// given as --local=DIR, as with kubectl's optional values.
	s.flag.NoOptDefVal = def
}

// check refuses an empty --local= before anything is opened.
func (s *source) check() error {
	if s.flag != nil && s.flag.Changed && s.dir == "" {
		return usagef("--local= names no directory: say --local or --local=DIR")
	}
	return nil
}

// open connects to NATS, or opens the local store, and binds to qfetch's
// objects without creating or changing any.
func (s *source) open(ctx context.Context) (app.JetStream, func(), error) {
	if s.flag != nil && s.flag.Changed {
		in, err := openLocal(ctx, s.dir)
		if err != nil {
			return app.JetStream{}, nil, fmt.Errorf("local runs in %s: %w", s.dir, err)
		}
		return in.Queue, in.Close, nil
	}
	var c struct{ NATS config.NATS }
	if err := app.LoadConfig(&c); err != nil {
		return app.JetStream{}, nil, err
	}
	log, err := app.Logger(config.Log{Level: "error"})
	if err != nil {
		return app.JetStream{}, nil, err
	}
	nc, js, err := app.Connect(c.NATS, "qfetch-ops", log)
	if err != nil {
		return app.JetStream{}, nil, err
	}
	q, err := app.Open(ctx, js)
	if err != nil {
		// A cluster without quorum is fleet-wide (exit 3), as for the roles.
		err = msg.Confirm(ctx, js, err)
		nc.Close()
		return app.JetStream{}, nil, err
	}
	return q, nc.Close, nil
}

// checkRun checks a run ID from the command line before it becomes part of
// a subject ("*" or ">" would select every run).
func checkRun(what, id string) error {
	if id == "" || msg.ValidRunID(id) {
		return nil
	}
	return usagef("%s %q is not a run ID (see qfetch runs)", what, id)
}

func operator() string {
	user := os.Getenv("USER")
	if user == "" {
		user = "unknown"
	}
	host, _ := os.Hostname()
	return user + "@" + host
}

func runsCommand() *cobra.Command {
	var (
		src    source
		n      int
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "runs [flags]",
		Short: "the newest runs: state, batches, hosts, bytes, retries, dead letters",
		Long: `Lists the newest runs, newest first: state (planning, fetching, completing,
complete, failed, stale, accepted-incomplete), window, batches done/planned,
hosts, bytes, retries, dead letters and age.`,
		Example: `  qfetch runs
  qfetch runs -n 3 --json
  qfetch runs -n -1            every run
  qfetch runs --local          the runs of qfetch local`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if n < -1 {
				return usagef("-n %d: say how many runs, or -1 for all", n)
			}
			if err := src.check(); err != nil {
				return err
			}
			q, done, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			return ops.Runs(cmd.Context(), q, runstat.Config{}, n, output(cmd.OutOrStdout(), asJSON))
		}),
	}
	cmd.Flags().IntVarP(&n, "limit", "n", 10, "how many of the newest runs: 0 lists none, -1 all (as kubectl logs --tail)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array, newest first)")
	src.addFlag(cmd.Flags())
	return withExitCodes(cmd)
}

func statusCommand() *cobra.Command {
	var (
		src    source
		watch  bool
		every  time.Duration
		asJSON bool
		run    string
		kb     bool
	)
	cmd := &cobra.Command{
		Use:   "status [RUN] [flags]",
		Short: "one run in detail; --watch follows it with a progress bar",
		Long: `Shows one run (the newest without RUN) in detail, and a line on the newest
KnowledgeBase pass; --watch then follows it with a progress line until it
completes or fails. A KnowledgeBase pass (kb-…) is shown as a run: name
it as RUN (or --run), or take the newest with --kb.`,
		Example: `  qfetch status
  qfetch status RUN --json
  qfetch status RUN --watch --every 5s
  qfetch status --kb
  qfetch status --run kb-20261204T120000Z-a1b2c3`,
		Args: cobra.MaximumNArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				if run != "" && run != args[0] {
					return usagef("RUN %q and --run %q: say one", args[0], run)
				}
				run = args[0]
			}
			if kb && run != "" {
				return usagef("--kb shows the newest KnowledgeBase pass: name no run with it")
			}
			if every <= 0 {
				return usagef("--every %s: must be more than 0", every)
			}
			if err := checkRun("RUN", run); err != nil {
				return err
			}
			if err := src.check(); err != nil {
				return err
			}
			q, done, err := src.open(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			if kb {
				if run, err = ops.NewestKBPass(cmd.Context(), q); err != nil {
					return err
				}
			}
			return ops.Status(cmd.Context(), q, runstat.Config{}, run, watch, every, output(cmd.OutOrStdout(), asJSON))
		}),
	}
	cmd.Flags().StringVar(&run, "run", "", "the run or KnowledgeBase pass to show (as RUN)")
	cmd.Flags().BoolVar(&kb, "kb", false, "show the newest KnowledgeBase pass")
	cmd.Flags().BoolVar(&watch, "watch", false, "follow the run until it ends")
	cmd.Flags().DurationVar(&every, "every", 2*time.Second, "refresh period with --watch")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per line per refresh with --watch)")
	src.addFlag(cmd.Flags())
	return withExitCodes(cmd)
}

// group is a command that only holds verbs (dlq, watermark): without one,
// or with an unknown one, it is a usage error rather than its help.
func group(cmd *cobra.Command, verbs string) *cobra.Command {
	cmd.RunE = runE(func(c *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef("say which: %s (see '%s --help')", verbs, c.CommandPath())
		}
		return usagef("unknown command %q: say %s (see '%s --help')", args[0], verbs, c.CommandPath())
	})
	cmd.Args = cobra.ArbitraryArgs
	return cmd
}

func dlqCommand() *cobra.Command {
	var src source
	cmd := group(&cobra.Command{
		Use:   "dlq",
		Short: "dead-lettered batches: list, show, replay, drop",
		Long: `Dead-lettered batches, with the reason and the last error. replay puts them
back on the work queue (same run, same keys) so the run can still complete;
drop removes them for good and marks their run accepted-incomplete (the
watermark stays, so the next run asks for those hosts again).`,
		Example: `  qfetch dlq list [--run RUN] [--json]
  qfetch dlq show SEQ [--json]
  qfetch dlq replay (SEQ... | --run RUN | --all)
  qfetch dlq drop --yes [--reason TEXT] (SEQ... | --run RUN | --all)`,
	}, "list, show, replay or drop")
	src.addFlag(cmd.PersistentFlags())
	cmd.AddCommand(dlqList(&src), dlqShow(&src), dlqReplay(&src), dlqDrop(&src))
	return cmd
}

// seqs parses dead letters' sequences from the command line.
func seqs(args []string) ([]uint64, error) {
	var out []uint64
	for _, a := range args {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil || n == 0 {
			return nil, usagef("%q is not a dead letter's sequence (see qfetch dlq list)", a)
		}
		out = append(out, n)
	}
	return out, nil
}

// withQueue checks src, opens it, runs f on its queue and closes it.
func withQueue(ctx context.Context, src *source, f func(app.JetStream) error) error {
	if err := src.check(); err != nil {
		return err
	}
	q, done, err := src.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	return f(q)
}

func dlqList(src *source) *cobra.Command {
	var (
		run    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list [flags]",
		Short: "list the dead letters (of one run with --run)",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if err := checkRun("--run", run); err != nil {
				return err
			}
			return withQueue(cmd.Context(), src, func(q app.JetStream) error {
				return ops.DLQList(cmd.Context(), q, run, output(cmd.OutOrStdout(), asJSON))
			})
		}),
	}
	cmd.Flags().StringVar(&run, "run", "", "the dead letters of this run")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return withExitCodes(cmd)
}

func dlqShow(src *source) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show SEQ [flags]",
		Short: "show one dead letter whole",
		Args:  cobra.ExactArgs(1),
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			seq, err := seqs(args)
			if err != nil {
				return err
			}
			return withQueue(cmd.Context(), src, func(q app.JetStream) error {
				return ops.DLQShow(cmd.Context(), q, seq[0], output(cmd.OutOrStdout(), asJSON))
			})
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return withExitCodes(cmd)
}

// selection holds the flags that name dead letters besides sequences.
type selection struct {
	run string
	all bool
}

func (s *selection) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.run, "run", "", "every dead letter of this run")
	fs.BoolVar(&s.all, "all", false, "every dead letter")
}

func (s *selection) resolve(args []string) (ops.Selection, error) {
	list, err := seqs(args)
	if err != nil {
		return ops.Selection{}, err
	}
	if err := checkRun("--run", s.run); err != nil {
		return ops.Selection{}, err
	}
	return ops.Selection{Seqs: list, Run: s.run, All: s.all}, nil
}

func dlqReplay(src *source) *cobra.Command {
	var (
		sel    selection
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "replay (SEQ... | --run RUN | --all) [flags]",
		Short: "put dead letters back on the work queue (same run, same keys)",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			s, err := sel.resolve(args)
			if err != nil {
				return err
			}
			return withQueue(cmd.Context(), src, func(q app.JetStream) error {
				return ops.DLQReplay(cmd.Context(), q, s, output(cmd.OutOrStdout(), asJSON))
			})
		}),
	}
	sel.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return withExitCodes(cmd)
}

func dlqDrop(src *source) *cobra.Command {
	var (
		sel         selection
		yes, asJSON bool
		reason, by  string
	)
	cmd := &cobra.Command{
		Use:   "drop --yes [--reason TEXT] (SEQ... | --run RUN | --all) [flags]",
		Short: "remove dead letters for good; their run becomes accepted-incomplete",
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			s, err := sel.resolve(args)
			if err != nil {
				return err
			}
			return withQueue(cmd.Context(), src, func(q app.JetStream) error {
				return ops.DLQDrop(cmd.Context(), q, s, by, reason, yes, output(cmd.OutOrStdout(), asJSON))
			})
		}),
	}
	sel.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&yes, "yes", false, "really drop")
	cmd.Flags().StringVar(&reason, "reason", "", "why (kept in the run record)")
	cmd.Flags().StringVar(&by, "by", operator(), "who")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return withExitCodes(cmd)
}

func watermarkCommand() *cobra.Command {
	var src source
	cmd := group(&cobra.Command{
		Use:   "watermark",
		Short: "show or set where the next run's window starts",
		Long: `The watermark is where the next run's window starts (minus the overlap): the
end of the last completed run. set moves it, backwards too, and records who
and why in its history.`,
		Example: `  qfetch watermark show [--json]
  qfetch watermark set --yes --time RFC3339 --reason TEXT [--by WHO]`,
	}, "show or set")
	src.addFlag(cmd.PersistentFlags())

	var showJSON bool
	show := &cobra.Command{
		Use:   "show [flags]",
		Short: "show the watermark and its history, oldest first",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return withQueue(cmd.Context(), &src, func(q app.JetStream) error {
				return ops.WatermarkShow(cmd.Context(), q, output(cmd.OutOrStdout(), showJSON))
			})
		}),
	}
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON (current, and the history oldest first)")

	var (
		at, reason, by string
		yes, setJSON   bool
	)
	set := &cobra.Command{
		Use:   "set --yes --time RFC3339 --reason TEXT [--by WHO] [flags]",
		Short: "move the watermark, backwards too; who and why are kept in its history",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			t, err := time.Parse(time.RFC3339, at)
			if err != nil {
				return usagef("--time %q is not RFC 3339 (2026-01-02T15:04:05Z)", at)
			}
			// Usage errors like a missing --yes (exit 2), found before NATS
			// is dialled.
			if reason == "" {
				return usagef("say why with --reason: it is kept in the watermark's history")
			}
			if by == "" {
				return usagef("say who with --by")
			}
			return withQueue(cmd.Context(), &src, func(q app.JetStream) error {
				return ops.WatermarkSet(cmd.Context(), q, t, by, reason, yes, output(cmd.OutOrStdout(), setJSON))
			})
		}),
	}
	set.Flags().StringVar(&at, "time", "", "new watermark, RFC 3339")
	set.Flags().StringVar(&reason, "reason", "", "why (required)")
	set.Flags().StringVar(&by, "by", operator(), "who")
	set.Flags().BoolVar(&yes, "yes", false, "really set")
	set.Flags().BoolVar(&setJSON, "json", false, "print JSON")
	cmd.AddCommand(withExitCodes(show), withExitCodes(set))
	return cmd
}

func checkCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check [flags]",
		Short: "preflight: NATS, JetStream objects, the bucket, Qualys credentials and limits",
		Long: `Preflight for an installation, with the workers' configuration (QFETCH_*):
NATS and JetStream, qfetch's streams and consumer, the bucket (a probe
object is written and deleted), the Qualys credentials and limits. One line
per check (ok, warn, fail, or skipped when an earlier one failed); exit
status 1 when any failed.`,
		Example: `  qfetch check
  qfetch check --json | jq '.[] | select(.level == "fail")'`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return runCheck(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), asJSON)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return withExitCodes(cmd)
}

func runCheck(ctx context.Context, stdout, stderr io.Writer, asJSON bool) error {
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
		fmt.Fprintln(stderr, err)
	}
	_, err := ops.Check(ctx, cfg, output(stdout, asJSON))
	if err == nil && len(errs) > 0 {
		err = errors.Join(errs...)
	}
	return err
}
