package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/tables"
)

func tablesCommand() *cobra.Command {
	var src source
	cmd := group(&cobra.Command{
		Use:   "tables",
		Short: "analyst tables (Parquet): rebuild, status",
		Long: `The analyst tables (detections, hosts, runs) the workers convert from each
sealed run's XML into <prefix>/tables/. rebuild converts a sealed run again
from its XML, in this process, with nothing but the bucket (QFETCH_S3_*, or
--local); status says how far a run's tables are (QFETCH_NATS_* and
QFETCH_S3_*, or --local).`,
		Example: `  qfetch tables rebuild --run RUN
  qfetch tables rebuild --all --concurrency 4
  qfetch tables status --run RUN [--json]`,
	}, "rebuild or status")
	src.addFlag(cmd.PersistentFlags())
	cmd.AddCommand(tablesRebuild(&src), tablesStatus(&src))
	return cmd
}

// bucket opens the store the tables are in: the directory bucket of
// `qfetch local` with --local, else QFETCH_S3_*. With queue, the ledger
// too.
func (s *source) bucket(ctx context.Context, queue bool) (store tables.Store, prefix string, q app.JetStream, done func(), err error) {
	if err := s.check(); err != nil {
		return nil, "", app.JetStream{}, nil, err
	}
	if s.flag != nil && s.flag.Changed {
		in, err := openLocal(ctx, s.dir)
		if err != nil {
			return nil, "", app.JetStream{}, nil, fmt.Errorf("local runs in %s: %w", s.dir, err)
		}
		if in.Store != nil {
			return in.Store, in.Prefix, in.Queue, in.Close, nil
		}
		// The local runs wrote to S3: QFETCH_S3_* names it.
		store, prefix, err := s3Bucket()
		if err != nil {
			in.Close()
			return nil, "", app.JetStream{}, nil, err
		}
		return store, prefix, in.Queue, in.Close, nil
	}
	store, prefix, err = s3Bucket()
	if err != nil {
		return nil, "", app.JetStream{}, nil, err
	}
	if !queue {
		return store, prefix, app.JetStream{}, func() {}, nil
	}
	q, done, err = s.open(ctx)
	if err != nil {
		return nil, "", app.JetStream{}, nil, err
	}
	return store, prefix, q, done, nil
}

func s3Bucket() (tables.Store, string, error) {
	var c struct{ S3 config.S3 }
	if err := app.LoadConfig(&c); err != nil {
		return nil, "", err
	}
	store, err := app.S3(c.S3, 0)
	if err != nil {
		return nil, "", err
	}
	return store, c.S3.Prefix, nil
}

func tablesRebuild(src *source) *cobra.Command {
	var (
		run         string
		all         bool
		concurrency int
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "rebuild (--run RUN | --all) [flags]",
		Short: "convert sealed runs' XML into their tables again, in this process",
		Long: `Converts every batch and Host List page of a sealed run (its _SUCCESS must be
there) from the XML its manifest.json lists, overwrites the run's parts,
removes parts it does not list, then writes the table manifest and the run's
row in the runs table. Idempotent: a second rebuild writes the same bytes.
It needs the bucket only, not NATS.`,
		Example: `  qfetch tables rebuild --run RUN
  qfetch tables rebuild --all --concurrency 4`,
		Args: cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if (run == "") == !all {
				return usagef("say which: --run RUN or --all")
			}
			if concurrency < 1 {
				return usagef("--concurrency %d: must be 1 or more", concurrency)
			}
			if err := checkRun("--run", run); err != nil {
				return err
			}
			store, prefix, _, done, err := src.bucket(cmd.Context(), false)
			if err != nil {
				return err
			}
			defer done()
			log, err := app.Logger(config.Log{Level: "warn"})
			if err != nil {
				return err
			}
			rb := tables.NewRebuilder(tables.Config{Prefix: prefix}, store, concurrency, log)
			out := cmd.OutOrStdout()
			report := func(run string, m tables.Manifest, err error) {
				printRebuilt(out, asJSON, run, m, err)
			}
			if all {
				return rb.RebuildAll(cmd.Context(), report)
			}
			m, err := rb.Rebuild(cmd.Context(), run)
			report(run, m, err)
			return err
		}),
	}
	cmd.Flags().StringVar(&run, "run", "", "the sealed run to rebuild")
	cmd.Flags().BoolVar(&all, "all", false, "every sealed run in the bucket, one after another")
	cmd.Flags().IntVar(&concurrency, "concurrency", tables.DefaultRebuildConcurrency, "parts converted at once")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (one object per run)")
	return withExitCodes(cmd)
}

func printRebuilt(w io.Writer, asJSON bool, run string, m tables.Manifest, err error) {
	if asJSON {
		v := map[string]any{"run": run, "ok": err == nil}
		if err != nil {
			v["error"] = err.Error()
		} else {
			v["parts"], v["detection_rows"], v["host_rows"] = len(m.Parts), m.DetectionRows, m.HostRows
		}
		b, _ := json.Marshal(v)
		fmt.Fprintln(w, string(b))
		return
	}
	if err != nil {
		fmt.Fprintf(w, "run %s: not rebuilt: %v\n", run, err)
		return
	}
	fmt.Fprintf(w, "run %s: %d parts, %d detection rows, %d host rows\n", run, len(m.Parts), m.DetectionRows, m.HostRows)
}

func tablesStatus(src *source) *cobra.Command {
	var (
		run    string
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "status --run RUN [flags]",
		Short: "how far a run's tables are: parts recorded of expected, complete or not",
		Args:  cobra.NoArgs,
		RunE: runE(func(cmd *cobra.Command, _ []string) error {
			if run == "" {
				return usagef("say which run: --run RUN")
			}
			if err := checkRun("--run", run); err != nil {
				return err
			}
			store, prefix, q, done, err := src.bucket(cmd.Context(), true)
			if err != nil {
				return err
			}
			defer done()
			log, err := app.Logger(config.Log{Level: "error"})
			if err != nil {
				return err
			}
			st, err := tables.NewBuilder(tables.Config{Prefix: prefix}, store, q.Ledger, nil, log).Status(cmd.Context(), run)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				b, _ := json.Marshal(map[string]any{"run": st.Run, "state": st.State, "recorded": st.Recorded,
					"expected": st.Expected, "complete": st.Complete})
				fmt.Fprintln(out, string(b))
				return nil
			}
			expected := "? (the run is not sealed)"
			if st.Expected > 0 {
				expected = fmt.Sprint(st.Expected)
			}
			verdict := "incomplete"
			if st.Complete {
				verdict = "complete"
			}
			fmt.Fprintf(out, "run %s (%s): tables %s, %d parts recorded of %s\n", st.Run, st.State, verdict, st.Recorded, expected)
			return nil
		}),
	}
	cmd.Flags().StringVar(&run, "run", "", "the run")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return withExitCodes(cmd)
}
