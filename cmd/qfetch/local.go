package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/local"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

const localUsage = `usage: qfetch local [flags]

Runs one whole qfetch run in this process: embedded NATS, the Qualys
simulator, and a directory as the bucket (--dir; the JetStream store is kept
there too, for qfetch runs/status/dlq/watermark --local). Run it again for
the next incremental window. With QFETCH_QUALYS_URL (and its username and password)
set it pulls from that Qualys API instead; with QFETCH_S3_ENDPOINT set it
writes to that S3 bucket (QFETCH_S3_* as for the worker).

flags:
`

func runLocal(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("qfetch local", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), localUsage); fs.PrintDefaults() }
	cfg := local.Config{Prefix: "qualys"}
	fs.StringVar(&cfg.Dir, "dir", local.DefaultDir(), "data directory (NATS store, and the bucket without S3)")
	fs.Int64Var(&cfg.SimHosts, "hosts", 20000, "simulated hosts")
	fs.Float64Var(&cfg.SimFaults, "faults", 0, "probability, 0 to 1, that a simulated call fails (500, 503, resets, cut bodies, …)")
	fs.Uint64Var(&cfg.SimSeed, "seed", 1, "simulator seed")
	fs.IntVar(&cfg.Slots, "slots", 2, "concurrent detection calls (the Qualys concurrency cap)")
	fs.IntVar(&cfg.BatchSize, "batch-size", 1000, "host IDs per batch, 1-10000")
	fs.IntVar(&cfg.PageSize, "page-size", 5000, "hosts per Host List page")
	fs.DurationVar(&cfg.Overlap, "overlap", 0, "window overlap with the last completed run")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return errUsage
	}
	if err := checkLocalFlags(fs, cfg, os.Getenv("QFETCH_QUALYS_URL") != ""); err != nil {
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
		cfg.Qualys = &qualys.Config{BaseURL: s.Qualys.URL, Username: s.Qualys.Username, Password: s.Qualys.Password.Reveal(),
			APIVersion: s.Qualys.APIVersion, CAFile: s.Qualys.CAFile, UserAgent: "qfetch/" + app.Version,
			ConnectTimeout: s.Qualys.ConnectTimeout, HeaderTimeout: s.Qualys.HeaderTimeout, IdleTimeout: s.Qualys.IdleTimeout}
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
	if sum.Skipped != "" {
		fmt.Fprintln(stdout, "nothing to do:", sum.Skipped)
		return nil
	}
	mb := float64(sum.Bytes) / 1e6
	fmt.Fprintf(stdout, "run %s complete: window [%s, %s)\n", sum.Run, fmtTime(sum.After), fmtTime(sum.Before))
	fmt.Fprintf(stdout, "  %d batches, %d hosts requested, %d with detections, %.1f MB in %.1fs (%.1f MB/s)\n",
		sum.Batches, sum.HostsRequested, sum.HostsReturned, mb, sum.Seconds, mb/max(sum.Seconds, 0.001))
	fmt.Fprintf(stdout, "  manifest %s\n  %s\n", sum.Manifest, sum.Success)
	fmt.Fprintf(stdout, "  data kept in %s (%.1f MiB); inspect with qfetch runs --local, qfetch status --local %s\n",
		sum.Dir, float64(sum.DirBytes)/(1<<20), sum.Run)
	return nil
}

// checkLocalFlags holds the flags to the rules the binaries hold their
// variables to (config.Fleet for the batch size and the cap), one line per
// bad flag, so that no bad value reaches the simulator or the planner.
func checkLocalFlags(fs *flag.FlagSet, cfg local.Config, realQualys bool) error {
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
		fs.Visit(func(f *flag.Flag) {
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
