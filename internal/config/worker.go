package config

import (
	"errors"
	"fmt"
	"time"
)

// Worker is a worker process's own settings (QFETCH_WORKER_*).
type Worker struct {
	Slots       int           `envconfig:"SLOTS" default:"2" desc:"concurrent detection calls in this process"`
	Grace       time.Duration `envconfig:"GRACE" default:"20s" desc:"on SIGTERM, how long in-flight batches may finish; keep it below the pod's terminationGracePeriodSeconds"`
	Listen      string        `envconfig:"LISTEN" default:":8080" desc:"address of /healthz, /readyz and /metrics"`
	ProbeEvery  time.Duration `envconfig:"PROBE_EVERY" default:"30s" desc:"while the fleet is paused, how often one worker probes Qualys and the bucket"`
	AckWait     time.Duration `envconfig:"ACK_WAIT" default:"2m" desc:"how long a batch whose worker went silent waits before another worker gets it; workers signal progress every quarter of it"`
	MaxBackoff  time.Duration `envconfig:"MAX_BACKOFF" default:"2m" desc:"longest wait before a failed batch is retried (the first waits 15-30s, each next twice as long); a waiting batch waits off the queue and holds no slot"`
	StatusEvery time.Duration `envconfig:"STATUS_EVERY" default:"30s" desc:"how often run-level metrics and runs/<run>/status.json are refreshed (one worker writes the file)"`
}

// Validate checks the Worker section on its own.
func (w Worker) Validate() error {
	var errs []error
	if w.Slots < 1 || w.Slots > 64 {
		errs = append(errs, fieldErr("Slots", fmt.Errorf("must be between 1 and 64, got %d", w.Slots)))
	}
	if w.Grace < time.Second {
		errs = append(errs, fieldErr("Grace", fmt.Errorf("must be at least 1s, got %s", w.Grace)))
	}
	if w.ProbeEvery < time.Second {
		errs = append(errs, fieldErr("ProbeEvery", fmt.Errorf("must be at least 1s, got %s", w.ProbeEvery)))
	}
	if w.MaxBackoff < 100*time.Millisecond || w.MaxBackoff > time.Hour {
		errs = append(errs, fieldErr("MaxBackoff", fmt.Errorf("must be between 100ms and 1h, got %s", w.MaxBackoff)))
	}
	if w.StatusEvery < time.Second {
		errs = append(errs, fieldErr("StatusEvery", fmt.Errorf("must be at least 1s, got %s", w.StatusEvery)))
	}
	if w.AckWait < 4*time.Second {
		errs = append(errs, fieldErr("AckWait", fmt.Errorf("must be at least 4s, got %s", w.AckWait)))
	}
	if w.Listen == "" {
		errs = append(errs, fieldErr("Listen", errors.New("required")))
	}
	return errors.Join(errs...)
}
