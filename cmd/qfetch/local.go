package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runstat"
)

func localCommand() *cobra.Command {
	cfg := local.Config{Prefix: "qualys"}
	cmd := &cobra.Command{
		Use:   "local [flags]",
		Short: "run one whole qfetch run in this process: embedded NATS, the simulator, a data directory",
		Long: `Runs one whole qfetch run in this process: embedded NATS, the Qualys
simulator, and the data directory (--dir) as the bucket. Run it again for the
next incremental window; qfetch runs, status, dlq and watermark read its runs
with --local. With QFETCH_QUALYS_URL (and its username and password) set it
pulls from that Qualys API instead; with QFETCH_S3_ENDPOINT set it writes to
that S3 bucket (QFETCH_S3_* as for the worker).`,
		Example: `  qfetch local
  qfetch local --hosts 100000 --faults 0.05
  qfetch runs --local`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			return runLocal(cmd.Context(), cmd, cfg)
		}),
	}
	fs := cmd.Flags()
	fs.StringVar(&cfg.Dir, "dir", local.DefaultDir(), "data directory (NATS store, and the bucket without S3)")
	fs.Int64Var(&cfg.SimHosts, "hosts", 20000, "simulated hosts")
	fs.Float64Var(&cfg.SimFaults, "faults", 0, "probability, 0 to 1, that a simulated call fails (500, 503, resets, cut bodies, …)")
	fs.Uint64Var(&cfg.SimSeed, "seed", 1, "simulator seed")
	fs.IntVar(&cfg.Slots, "slots", 2, "concurrent detection calls (the Qualys concurrency cap)")
	fs.IntVar(&cfg.BatchSize, "batch-size", 1000, "host IDs per batch, 1-10000")
	fs.IntVar(&cfg.PageSize, "page-size", 5000, "hosts per Host List page")
	fs.DurationVar(&cfg.Overlap, "overlap", 0, "window overlap with the last completed run")
	fs.BoolVar(&cfg.KB, "kb", true, "also fetch the KnowledgeBase (the whole of it the first time, then what changed) into kb/ and the kb table")
	return withExitCodes(cmd)
}

func runLocal(ctx context.Context, cmd *cobra.Command, cfg local.Config) error {
	stdout := cmd.OutOrStdout()
	if err := checkLocalFlags(cmd.Flags(), cfg, os.Getenv("QFETCH_QUALYS_URL") != ""); err != nil {
		return fmt.Errorf("%w:\n%w", app.ErrConfig, err)
	}

	var lc config.Log
	if err := config.Load(config.Prefix, &struct{ Log *config.Log }{&lc}); err != nil {
		return err
	}
	tty := logging.IsTerminal(os.Stderr)
	if tty && os.Getenv("QFETCH_LOG_LEVEL") == "" {
		// The progress line says what per-batch lines would; keep the
		// terminal for it and for what goes wrong.
		lc.Level = "warn"
	}
	log, err := logging.New(os.Stderr, lc.Format, lc.Level, tty)
	if err != nil {
		return err
	}
	cfg.Log = log
	log.Info("qfetch local started", app.BuildAttr(), "dir", cfg.Dir)
	if tty {
		cfg.Progress = os.Stderr
	}
	if os.Getenv("QFETCH_QUALYS_URL") != "" {
		var s struct{ Qualys config.Qualys }
		if err := app.LoadConfig(&s); err != nil {
			return err
		}
		qc := app.QualysConfig(s.Qualys)
		cfg.Qualys = &qc
	}
	if os.Getenv("QFETCH_S3_ENDPOINT") != "" {
		var s struct{ S3 config.S3 }
		if err := app.LoadConfig(&s); err != nil {
			return err
		}
		cfg.Prefix = s.S3.Prefix
		cfg.S3 = &objstore.S3Config{Endpoint: s.S3.Endpoint, Secure: s.S3.Secure, AccessKey: s.S3.AccessKey.Reveal(),
			SecretKey: s.S3.SecretKey.Reveal(), Region: s.S3.Region, Bucket: s.S3.Bucket, CAFile: s.S3.CAFile}
	}

	sum, err := local.Run(ctx, cfg)
	if err != nil {
		return err
	}
	printSummary(stdout, sum, localFlag(cfg.Dir))
	return nil
}

// localFlag is the --local flag that reads the runs kept in dir.
func localFlag(dir string) string {
	if dir == local.DefaultDir() {
		return "--local"
	}
	return "--local=" + dir
}

// printSummary says what a local run did, and how to look at it again.
func printSummary(w io.Writer, sum local.Summary, localFlag string) {
	if sum.Skipped != "" {
		fmt.Fprintln(w, "nothing to do:", sum.Skipped)
		return
	}
	fmt.Fprintf(w, "run %s complete: window [%s, %s)\n", sum.Run, fmtTime(sum.After), fmtTime(sum.Before))
	fmt.Fprintf(w, "  %s, %s requested, %d with detections, %s in %.1fs (%s/s)\n",
		runstat.Count(sum.Batches, "batch", "batches"), runstat.Count(sum.HostsRequested, "host", "hosts"),
		sum.HostsReturned, runstat.Bytes(sum.Bytes), sum.Seconds, runstat.Bytes(int64(float64(sum.Bytes)/max(sum.Seconds, 0.001))))
	fmt.Fprintf(w, "  manifest %s\n  %s\n", sum.Manifest, sum.Success)
	switch {
	case sum.Tables != "":
		fmt.Fprintf(w, "  tables %s\n", sum.Tables)
		// One line to paste into duckdb; the glob reads every run's parts.
		fmt.Fprintf(w, "  query: duckdb -c \"SELECT severity, count(*) FROM read_parquet('%s', hive_partitioning=true) GROUP BY ALL ORDER BY 1\"\n", sum.TablesGlob)
	case sum.TablesNote != "":
		fmt.Fprintf(w, "  %s\n", sum.TablesNote)
	}
	printKB(w, sum)
	if sum.Dir != "" {
		fmt.Fprintf(w, "  data kept in %s (%s)\n", sum.Dir, runstat.Bytes(sum.DirBytes))
	}
	fmt.Fprintf(w, "  look again: qfetch status %s %s (also runs, dlq, watermark)\n", sum.Run, localFlag)
}

// printKB says what the run's KnowledgeBase pass did, and how to read the
// run's open detections with their KnowledgeBase rows.
func printKB(w io.Writer, sum local.Summary) {
	k := sum.KB
	if k == nil {
		return
	}
	if k.Pass == "" {
		fmt.Fprintf(w, "  %s\n", k.Note)
		return
	}
	kind := "incremental"
	if k.Full {
		kind = "full"
	}
	fmt.Fprintf(w, "kb pass %s (%s): %s, %s returned (%d backfilled asked), %s in %.1fs\n", k.Pass, kind,
		runstat.Count(k.Batches, "batch", "batches"), runstat.Count(k.QIDs, "QID", "QIDs"), k.Backfill, runstat.Bytes(k.Bytes), k.Seconds)
	switch {
	case k.Note != "":
		fmt.Fprintf(w, "  %s\n", k.Note)
	case k.KBGlob != "" && sum.TablesGlob != "":
		fmt.Fprintf(w, "  manifest %s\n", k.Manifest)
		fmt.Fprintf(w, "  join: duckdb -c \"%s\"\n", kbJoin(sum.TablesGlob, k.KBGlob, k.RunsGlob, sum.Run))
	}
}

// kbJoin is docs/queries.md's "open detections with title, severity, CVEs
// and CVSS" on one line: run's open detections joined to the current
// KnowledgeBase (each QID's row from the newest complete pass).
func kbJoin(detections, kb, runs, run string) string {
	return "SELECT d.host_id, d.qid, k.title, d.severity, [c.id FOR c IN k.cves] AS cves, k.cvss_base, k.cvss3_base " +
		"FROM read_parquet('" + detections + "', hive_partitioning=true) d " +
		"LEFT JOIN (SELECT * FROM read_parquet('" + kb + "', hive_partitioning=true) " +
		"WHERE run IN (SELECT run FROM read_parquet('" + runs + "', hive_partitioning=true) WHERE kind = 'kb') " +
		"QUALIFY row_number() OVER (PARTITION BY qid ORDER BY run DESC) = 1) k ON k.qid = d.qid " +
		"WHERE d.run = '" + run + "' AND d.status IN ('New', 'Active', 'Re-Opened') " +
		"ORDER BY d.severity DESC, k.cvss3_base DESC NULLS LAST LIMIT 20"
}

// checkLocalFlags holds the flags to the rules the binaries hold their
// variables to (config.Fleet for the batch size and the cap), one line per
// bad flag, so that no bad value reaches the simulator or the planner.
func checkLocalFlags(fs *pflag.FlagSet, cfg local.Config, realQualys bool) error {
	var errs []error
	bad := func(name string, err error) { errs = append(errs, fmt.Errorf("--%s: %w", name, err)) }
	fleetFlags := map[string]string{"BatchSize": "batch-size", "MaxInFlight": "slots"}
	if err := (config.Fleet{BatchSize: cfg.BatchSize, MaxInFlight: cfg.Slots}).Validate(); err != nil {
		for _, e := range unjoin(err) {
			var fe *config.FieldError
			if errors.As(e, &fe) && fleetFlags[fe.Field] != "" {
				bad(fleetFlags[fe.Field], fe.Err)
			} else {
				errs = append(errs, e)
			}
		}
	}
	if cfg.PageSize < 0 {
		bad("page-size", fmt.Errorf("must be 0 or more, got %d", cfg.PageSize))
	}
	if cfg.Overlap < 0 {
		bad("overlap", fmt.Errorf("must be 0 or more, got %s", cfg.Overlap))
	}
	if realQualys {
		// The simulator's flags would be silently ignored: the user meant
		// one or the other.
		fs.Visit(func(f *pflag.Flag) {
			switch f.Name {
			case "hosts", "faults", "seed":
				bad(f.Name, errors.New("only applies to the simulator; unset QFETCH_QUALYS_URL to use it"))
			}
		})
		return errors.Join(errs...)
	}
	if cfg.SimHosts < 1 {
		bad("hosts", fmt.Errorf("must be 1 or more, got %d", cfg.SimHosts))
	}
	if !(cfg.SimFaults >= 0 && cfg.SimFaults <= 1) { // NaN too
		bad("faults", fmt.Errorf("must be between 0 and 1, got %g", cfg.SimFaults))
	}
	return errors.Join(errs...)
}

// unjoin lists the errors errors.Join put together.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "the beginning"
	}
	return t.UTC().Format(time.RFC3339)
}
