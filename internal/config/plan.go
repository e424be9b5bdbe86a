package config

import (
	"errors"
	"fmt"
	"time"
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
