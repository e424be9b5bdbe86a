package config

import (
	"errors"
	"fmt"
	"time"
)

// Exporter is `qfetch exporter`'s own settings (QFETCH_EXPORTER_*).
type Exporter struct {
	Listen string        `envconfig:"LISTEN" default:":8080" desc:"address of /healthz, /readyz and /metrics"`
	Every  time.Duration `envconfig:"EVERY" default:"30s" desc:"refresh period of the run-level gauges and of runs/<run>/status.json"`
}

// Validate checks the Exporter section on its own.
func (e Exporter) Validate() error {
	var errs []error
	if e.Listen == "" {
		errs = append(errs, fieldErr("Listen", errors.New("required")))
	}
	if e.Every < time.Second {
		errs = append(errs, fieldErr("Every", fmt.Errorf("must be at least 1s, got %s", e.Every)))
	}
	return errors.Join(errs...)
}
