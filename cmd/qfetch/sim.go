package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/qfetch/qfetch/internal/qualysim"
)

// faultFlag collects repeated --fault kind=probability.
type faultFlag map[qualysim.FaultKind]float64

func (f faultFlag) String() string { return fmt.Sprint(map[qualysim.FaultKind]float64(f)) }
func (f faultFlag) Set(v string) error {
	k, p, ok := strings.Cut(v, "=")
	prob, err := strconv.ParseFloat(p, 64)
	if !ok || err != nil || !slices.Contains(qualysim.AllFaults, qualysim.FaultKind(k)) {
		return fmt.Errorf("want kind=probability, e.g. reset=0.01; kinds: %v", qualysim.AllFaults)
	}
	f[qualysim.FaultKind(k)] = prob
	return nil
}

func (f faultFlag) Type() string { return "kind=probability" }

func simCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim [flags]",
		Short: "serve the Qualys API simulator (Host List, Host List Detection, KnowledgeBase) for demos and tests",
		Long: `Serves a simulated Qualys VM API until SIGINT/SIGTERM and prints the URL and
credentials to use, as QFETCH_* lines (eval-able), then a curl example.
The control plane (/__sim/stats, /__sim/clock, /__sim/faults, /__sim/truth,
...) needs no credentials: keep --addr on loopback.`,
		Example: `  qfetch sim --hosts 100000 --addr 127.0.0.1:0 --faults 0.05 --seed 1`,
		Args:    cobra.NoArgs,
	}
	run := simFlags(cmd.Flags())
	cmd.RunE = runE(func(cmd *cobra.Command, _ []string) error { return run(cmd.Context(), cmd.OutOrStdout()) })
	return withExitCodes(cmd)
}

// simFlags declares sim's flags on fs and returns the command body that
// reads them.
func simFlags(fs *pflag.FlagSet) func(ctx context.Context, stdout io.Writer) error {
	var (
		cfg      qualysim.Config
		addr     = fs.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free one)")
		spread   = fs.Float64("faults", 0, "probability that a call suffers an outcome fault, spread evenly over "+fmt.Sprint(qualysim.OutcomeFaults))
		faults   = faultFlag{}
		conc     = fs.Int("concurrency-limit", 2, "calls per API running at once (0 = unlimited)")
		rateLim  = fs.Int("rate-limit", 300, "calls per API per rate window (0 = off)")
		start    = fs.String("start", qualysim.DefaultStart.Format(time.RFC3339), "simulated clock start (RFC 3339)")
		frozen   = fs.Bool("frozen-clock", false, "the clock moves only through /__sim/clock (default: it follows the wall clock)")
		hosts    = fs.Int64("hosts", 100000, "hosts in the subscription at the start")
		highFrac = fs.Float64("high-id-fraction", 0.1, "share of hosts with IDs above 2^32")
	)
	fs.Var(faults, "fault", "kind=probability for one fault kind, repeatable: "+fmt.Sprint(qualysim.AllFaults))
	fs.Uint64Var(&cfg.Seed, "seed", 1, "dataset and fault seed")
	fs.Int64Var(&cfg.NewHostsPerDay, "new-hosts-per-day", 0, "hosts added per simulated day")
	fs.IntVar(&cfg.IDRun, "id-run", 3, "consecutive IDs per run")
	fs.IntVar(&cfg.IDGap, "id-gap", 20, "mean missing IDs between runs")
	fs.BoolVar(&cfg.IDRanges, "id-ranges", false, "Host List details=None answers with ID_RANGE for runs")
	fs.Float64Var(&cfg.MeanDetections, "mean-detections", 12, "approximate mean detections per host with any")
	fs.IntVar(&cfg.MaxDetections, "max-detections", 1000, "most detections one host has")
	fs.IntVar(&cfg.ResultsSize, "results-size", 400, "mean RESULTS bytes per detection")
	fs.DurationVar(&cfg.ProcessedSpan, "span", 30*24*time.Hour, "longest re-processing period")
	fs.StringVar(&cfg.Username, "username", "qsim_user", "username to accept")
	fs.StringVar(&cfg.Password, "password", "", "password to accept (default: generated and printed)")
	fs.DurationVar(&cfg.RateWindow, "rate-window", time.Hour, "rate window on the simulated clock")
	fs.DurationVar(&cfg.Overhead, "overhead", 0, "think-time before every answer's first byte")
	fs.DurationVar(&cfg.PerHostCost, "per-host-cost", 0, "more think-time before a detection answer's first byte, per host asked for (at most 1s)")
	fs.DurationVar(&cfg.Faults.StallFor, "stall", 30*time.Second, "length of a stall fault")
	fs.DurationVar(&cfg.Faults.SlowStartFor, "slow-start", 5*time.Second, "delay of a slowstart fault")
	fs.IntVar(&cfg.Faults.Bandwidth, "bandwidth", 1<<20, "bytes/s under a bandwidth fault (--fault bandwidth=1 caps every answer)")
	fs.Int64Var(&cfg.KBQIDs, "kb-qids", 0, "QIDs in the KnowledgeBase at the start, detected ones included (0: those + 1000)")
	fs.Int64Var(&cfg.KBNewPerDay, "kb-new-per-day", 5, "undetected QIDs published per simulated day (0: none)")
	fs.BoolVar(&cfg.KBKeepAlive, "kb-keep-alive", false, "KnowledgeBase answers carry the keep-alive comment real ones have")
	fs.BoolVar(&cfg.Faults.HTML503, "html-503", false, "503 faults carry an HTML page")
	fs.IntVar(&cfg.Faults.ErrorDocCode, "error-doc-code", 1981, "code of the 200 + SIMPLE_RETURN fault")
	return func(ctx context.Context, stdout io.Writer) error {
		return serveSim(ctx, stdout, cfg, simOptions{*addr, *spread, faults, *conc, *rateLim, *start, *frozen, *hosts, *highFrac})
	}
}

// simOptions are sim's flags that are not simulator configuration as is.
type simOptions struct {
	addr          string
	spread        float64
	faults        faultFlag
	conc, rateLim int
	start         string
	frozen        bool
	hosts         int64
	highFrac      float64
}

func serveSim(ctx context.Context, stdout io.Writer, cfg qualysim.Config, o simOptions) error {
	cfg.Hosts = o.hosts
	cfg.HighIDFraction = orOff(o.highFrac)
	cfg.ConcurrencyLimit = orOffInt(o.conc)
	if cfg.KBNewPerDay == 0 {
		cfg.KBNewPerDay = qualysim.Off
	}
	cfg.RateLimit = orOffInt(o.rateLim)
	cfg.Faults.Prob = qualysim.Spread(o.spread)
	for k, p := range o.faults {
		cfg.Faults.Prob[k] = p
	}
	t, err := time.Parse(time.RFC3339, o.start)
	if err != nil {
		return usagef("--start %q is not RFC 3339 (2026-01-02T15:04:05Z)", o.start)
	}
	cfg.Start = t
	cfg.Clock = qualysim.NewClock(t, !o.frozen)
	if cfg.Password == "" {
		cfg.Password = rand.Text()
	}
	if err := cfg.Validate(); err != nil {
		// The flags set the configuration field by field: a bad one is a
		// bad command line.
		return usagef("%v", err)
	}

	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	sim := qualysim.New(cfg)
	url := qualysim.URL(ln)
	// A simulator's made-up credentials are printed on purpose: they are
	// what a newcomer needs to point curl or qfetch at it.
	fmt.Fprintf(stdout, "QFETCH_QUALYS_URL=%s\nQFETCH_QUALYS_USERNAME=%s\nQFETCH_QUALYS_PASSWORD=%s\n", url, cfg.Username, cfg.Password)
	fmt.Fprintf(stdout, "# qualysim: %d hosts, seed %d, clock %s, limits %s, outcome faults %.3g\n",
		cfg.Hosts, cfg.Seed, t.Format(time.RFC3339), limitsText(cfg), totalProb(cfg.Faults.Prob))
	fmt.Fprintf(stdout, "# try: curl -u '%s:%s' -H 'X-Requested-With: curl' '%s/api/2.0/fo/asset/host/?action=list&details=None&truncation_limit=5'\n",
		cfg.Username, cfg.Password, url)
	fmt.Fprintf(stdout, "#      curl '%s/__sim/stats'   (also /__sim/truth, /__sim/clock, /__sim/faults)\n", url)
	if f, ok := stdout.(*os.File); ok {
		_ = f.Sync()
	}
	return sim.Serve(ctx, ln)
}

func orOff(v float64) float64 {
	if v == 0 {
		return qualysim.Off
	}
	return v
}

func orOffInt(v int) int {
	if v <= 0 {
		return qualysim.Off
	}
	return v
}

func limitsText(c qualysim.Config) string {
	s := "concurrency "
	if c.ConcurrencyLimit > 0 {
		s += strconv.Itoa(c.ConcurrencyLimit)
	} else {
		s += "unlimited"
	}
	if c.RateLimit > 0 {
		s += fmt.Sprintf(", %d calls per %s", c.RateLimit, c.RateWindow)
	} else {
		s += ", no rate limit"
	}
	return s
}

func totalProb(m map[qualysim.FaultKind]float64) float64 {
	t := 0.0
	for _, k := range qualysim.OutcomeFaults {
		t += m[k]
	}
	return t
}
