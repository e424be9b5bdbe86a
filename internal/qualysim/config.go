package qualysim

import (
	"errors"
	"fmt"
	"time"
)

// Off disables a limit or a default-on fraction in Config (RateLimit,
// ConcurrencyLimit, HighIDFraction, ZeroDetectionFraction, ResultsSize,
// KBNewPerDay), whose zero value means "the default".
const Off = -1

// Config describes the synthetic subscription and how the simulator
// behaves. Zero fields take the defaults noted; New documents the model.
type Config struct {
	Seed uint64 // every generated value derives from it

	// Dataset.
	Hosts                 int64         // hosts at Start; default 1000
	NewHostsPerDay        int64         // hosts added per simulated day after Start, IDs above the current max; default 0
	IDBase                uint64        // first low ID; default 10,000,000
	IDRun                 int           // consecutive IDs per run; default 3
	IDGap                 int           // mean count of missing IDs between runs; default 20, Off for none
	HighIDFraction        float64       // share of the initial hosts with IDs above 2^32; default 0.1, Off for none
	HighIDBase            uint64        // where the high IDs start; default 2^32 + 1,000,000
	ZeroDetectionFraction float64       // share of hosts without detections; default 0.1, Off for none
	MeanDetections        float64       // approximate mean detections of the others; default 12
	MaxDetections         int           // cap on one host's detections (≤ 65535); default 1000
	ResultsSize           int           // mean RESULTS text bytes per detection; default 400, Off for no RESULTS
	Start                 time.Time     // the clock's initial time; default 2026-01-01T00:00:00Z
	ProcessedSpan         time.Duration // longest re-processing period; default 30 days
	IDRanges              bool          // Host List details=None emits ID_RANGE for runs of consecutive IDs

	// KnowledgeBase (kb.go). It always holds every QID a detection uses.
	KBQIDs      int64 // QIDs in the KB at Start, detected ones included (approximate); default those + 1000
	KBNewPerDay int64 // QIDs nobody detects published per simulated day after Start; default 5, Off for none
	KBKeepAlive bool  // write the keep-alive comment where the recordings have it

	// Account.
	Username string // default "qsim_user"
	Password string // default "qsim_password"

	// Limits, per API (Host List, Host List Detection and about.php count
	// separately, as on Qualys).
	ConcurrencyLimit int           // calls running at once; default 2, Off for none
	RateLimit        int           // calls per RateWindow; default 300, Off for none
	RateWindow       time.Duration // default 1h, on the simulated clock

	// Overhead is a fixed think-time before the first byte of every API
	// answer (real time), for benchmarks that want a Qualys-like latency.
	Overhead time.Duration
	// PerHostCost is more think-time before a detection answer's first
	// byte, per host the call asks for (the existing hosts its ids,
	// id_min and id_max select, at most truncation_limit): Qualys gathers
	// a batch before it streams, so its wait grows with the batch size.
	// Default 0.
	PerHostCost time.Duration

	Faults Faults // initial fault settings; change them at run time with SetFaults

	// Clock is the simulated clock. nil: a frozen clock at Start, which
	// only moves when told to (Advance, /__sim/clock).
	Clock *Clock

	// NoAbout makes /msp/about.php answer a plain 404, as a gateway that
	// passes only the API paths qfetch fetches from does, or a platform
	// without it.
	NoAbout bool

	// BaseURL, when set, is the scheme://host[:port] written into WARNING
	// URLs and DOCTYPEs instead of the one the request arrived on.
	BaseURL string
}

// DefaultStart is the clock's initial time when Config.Start is zero.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	setI64 := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	setInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	setFrac := func(v *float64, d float64) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			*v = 0
		}
	}
	setI64(&c.Hosts, 1000)
	if c.IDBase == 0 {
		c.IDBase = 10_000_000
	}
	setInt(&c.IDRun, 3)
	setInt(&c.IDGap, 20)
	if c.IDGap < 0 {
		c.IDGap = 0
	}
	setFrac(&c.HighIDFraction, 0.1)
	if c.HighIDBase == 0 {
		c.HighIDBase = 1<<32 + 1_000_000
	}
	setFrac(&c.ZeroDetectionFraction, 0.1)
	if c.MeanDetections == 0 {
		c.MeanDetections = 12
	}
	setInt(&c.MaxDetections, 1000)
	setInt(&c.ResultsSize, 400)
	setI64(&c.KBNewPerDay, 5)
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	c.Start = c.Start.UTC().Truncate(time.Second)
	if c.ProcessedSpan == 0 {
		c.ProcessedSpan = 30 * 24 * time.Hour
	}
	if c.Username == "" {
		c.Username = "qsim_user"
	}
	if c.Password == "" {
		c.Password = "qsim_password"
	}
	setInt(&c.ConcurrencyLimit, 2)
	setInt(&c.RateLimit, 300)
	if c.RateWindow == 0 {
		c.RateWindow = time.Hour
	}
	c.Faults = c.Faults.withDefaults()
	return c
}

// Validate reports the first setting New cannot work with, after defaults.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	check := func(bad bool, format string, args ...any) {
		if bad {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.Hosts < 0, "qualysim: Hosts must be ≥ 0, got %d", c.Hosts)
	check(c.Hosts > 1<<34, "qualysim: Hosts must be ≤ 2^34, got %d", c.Hosts)
	check(c.NewHostsPerDay < 0, "qualysim: NewHostsPerDay must be ≥ 0")
	check(c.KBQIDs < 0 || c.KBQIDs >= kbNewBase, "qualysim: KBQIDs must be in 0..%d, got %d", kbNewBase-1, c.KBQIDs)
	check(c.IDRun < 1, "qualysim: IDRun must be ≥ 1, got %d", c.IDRun)
	check(c.HighIDFraction > 1, "qualysim: HighIDFraction must be ≤ 1")
	check(c.ZeroDetectionFraction >= 1, "qualysim: ZeroDetectionFraction must be < 1")
	check(c.MeanDetections < 0, "qualysim: MeanDetections must be ≥ 0")
	check(c.MaxDetections < 1 || c.MaxDetections > 65535, "qualysim: MaxDetections must be in 1..65535, got %d", c.MaxDetections)
	check(c.ResultsSize > 1<<20, "qualysim: ResultsSize must be ≤ 1 MiB")
	check(c.ProcessedSpan < time.Second, "qualysim: ProcessedSpan must be ≥ 1s")
	check(c.RateWindow < time.Second, "qualysim: RateWindow must be ≥ 1s")
	check(c.Overhead < 0, "qualysim: Overhead must be ≥ 0")
	check(c.PerHostCost < 0 || c.PerHostCost > time.Second, "qualysim: PerHostCost must be in 0..1s, got %v", c.PerHostCost)
	if len(errs) == 0 {
		m := newModel(&c)
		check(m.lowIDMax() >= c.HighIDBase, "qualysim: low IDs would reach HighIDBase %d; raise it or lower Hosts/IDGap", c.HighIDBase)
	}
	if err := c.Faults.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
