package fetch

import (
	"errors"
	"fmt"

	"github.com/qfetch/qfetch/internal/logging"
)

// Readiness is the worker's answer to /readyz: connected (to NATS) must
// say nil, and the worker must be neither paused by a fleet-wide fault nor
// wedged (see [ErrWedged]).
func (w *Worker) Readiness(connected func() error) func() error {
	return func() error {
		if err := connected(); err != nil {
			return err
		}
		if err := w.Ready(); errors.Is(err, ErrWedged) {
			return fmt.Errorf("%s", logging.Scrub(err.Error()))
		} else if err != nil {
			// The fault's text names endpoints and codes, never credentials.
			return fmt.Errorf("fleet-wide fault: %s", logging.Scrub(err.Error()))
		}
		return nil
	}
}
