package config

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qfetch/qfetch/internal/msg"
)

// Plan is the planner's own settings (QFETCH_PLAN_*).
type Plan struct {
	Overlap    time.Duration `envconfig:"OVERLAP" default:"1h" desc:"how far before the last completed run's end a new window starts"`
	FirstAfter string        `envconfig:"FIRST_AFTER" desc:"window start of the very first run, RFC 3339 (e.g. 2026-01-01T00:00:00Z); empty = all hosts"`
	LockTTL    time.Duration `envconfig:"LOCK_TTL" default:"1m" desc:"planner lock lifetime without refresh"`
}

// FirstAfterTime parses FirstAfter; zero when empty.
func (p Plan) FirstAfterTime() (time.Time, error) {
	if p.FirstAfter == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, p.FirstAfter)
}

// Validate checks the Plan section on its own.
func (p Plan) Validate() error {
	var errs []error
	if p.Overlap < 0 {
		errs = append(errs, fieldErr("Overlap", fmt.Errorf("must not be negative, got %s", p.Overlap)))
	}
	if _, err := p.FirstAfterTime(); err != nil {
		errs = append(errs, fieldErr("FirstAfter", fmt.Errorf("must be RFC 3339 like 2026-01-01T00:00:00Z, got %q", p.FirstAfter)))
	}
	if p.LockTTL < 3*time.Second {
		errs = append(errs, fieldErr("LockTTL", fmt.Errorf("must be at least 3s, got %s", p.LockTTL)))
	}
	return errors.Join(errs...)
}

// KB is the planner's KnowledgeBase step (QFETCH_KB_*): a KnowledgeBase
// pass after each detection step, full at first and every FULL_EVERY,
// otherwise the QIDs changed since the KB watermark.
type KB struct {
	Enabled   bool          `envconfig:"ENABLED" default:"true" desc:"plan KnowledgeBase passes after the detection step"`
	BatchSize int           `envconfig:"BATCH_SIZE" default:"1000" desc:"QIDs per KnowledgeBase batch, 1-10000"`
	Details   string        `envconfig:"DETAILS" default:"All" desc:"KnowledgeBase details: Basic or All"`
	Overlap   time.Duration `envconfig:"OVERLAP" default:"1h" desc:"how far before the KB watermark an incremental pass starts"`
	Every     time.Duration `envconfig:"EVERY" default:"0" desc:"how old the newest KnowledgeBase pass must be before another opens; 0 = every planner pass"`
	FullEvery time.Duration `envconfig:"FULL_EVERY" default:"720h" desc:"a pass lists the whole KnowledgeBase when the last full one is older"`
}

// KBDetails are the KnowledgeBase detail levels qfetch asks for: the kb
// table needs at least Basic (titles, severities, CVEs, CVSS).
var KBDetails = []string{"Basic", "All"}

// Validate checks the KB section on its own.
func (k KB) Validate() error {
	var errs []error
	// A worker refuses a batch message above msg.MaxBatchHosts QIDs.
	if k.BatchSize < 1 || k.BatchSize > msg.MaxBatchHosts {
		errs = append(errs, fieldErr("BatchSize", fmt.Errorf("must be between 1 and %d, got %d", msg.MaxBatchHosts, k.BatchSize)))
	}
	if !slices.Contains(KBDetails, k.Details) {
		errs = append(errs, fieldErr("Details", fmt.Errorf("must be Basic or All, got %q", k.Details)))
	}
	if k.Overlap < 0 {
		errs = append(errs, fieldErr("Overlap", fmt.Errorf("must not be negative, got %s", k.Overlap)))
	}
	if k.Every < 0 {
		errs = append(errs, fieldErr("Every", fmt.Errorf("must not be negative, got %s", k.Every)))
	}
	if k.FullEvery <= 0 {
		errs = append(errs, fieldErr("FullEvery", fmt.Errorf("must be positive, got %s", k.FullEvery)))
	}
	return errors.Join(errs...)
}
