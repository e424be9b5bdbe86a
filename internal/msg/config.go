package msg

import (
	"errors"
	"fmt"
	"time"
)

// Config is what an operator may tune. The zero value of a field means its
// default; [Setup] fills defaults and validates.
type Config struct {
	// StreamReplicas is the replica count of every stream and bucket: 1 on a
	// single server, 3 in a cluster.
	StreamReplicas int
	// DuplicateWindow is how long JetStream remembers a Nats-Msg-Id. It must
	// outlast the longest planner run, so that a planner restarted inside a
	// run republishes nothing twice (I3). Default 6h.
	DuplicateWindow time.Duration
	// MaxInFlight is the consumer's MaxAckPending: the fleet-wide cap on
	// batches being fetched at once, whatever the number of workers (I5).
	// Default 2.
	MaxInFlight int
	// AckWait is how long a delivered batch may go without an ack or an
	// InProgress before JetStream hands it to another worker. Workers must
	// signal progress well inside it. Default 2m.
	AckWait time.Duration
	// MaxFailures is how many retryable failures of one batch workers
	// accept before they dead-letter it (counted by ledger.Ledger.CountFailure).
	// The consumer itself redelivers without limit: a Nak for back-pressure
	// or a fleet-wide fault also counts as a delivery, and neither may ever
	// use up a batch's chances (I6). Default 10.
	MaxFailures int
	// MaxMsgSize is the largest batch message the stream accepts, in bytes.
	// Default 1 MiB (the server's default max_payload).
	MaxMsgSize int32
	// AdoptConsumer keeps an existing consumer's settings (MaxAckPending,
	// AckWait) instead of updating them to this Config: set by processes
	// that do not own the fleet cap, such as the planner, so that only the
	// workers' QFETCH_MAX_IN_FLIGHT decides it (I5).
	//
	// An adopting process does not create a missing consumer either (the
	// workers' NATS user alone may): the queue binds to it when it first
	// needs it.
	AdoptConsumer bool
	// KeepStreams binds to the streams as they are, once checked
	// compatible, creating none: set by processes that do not own the
	// streams' settings (workers, the exporter; the planner's NATS user
	// alone may create or update them, so that no other credential can
	// pre-create one with settings of its choosing). A missing stream is a
	// retryable error wrapping [ErrNotSetUp]: such a process waits for the
	// planner.
	KeepStreams bool
	// DLQMaxAge is how long dead letters are kept. 0 keeps them until an
	// operator removes them: a dead letter is evidence of a run that cannot
	// complete.
	DLQMaxAge time.Duration
}

// Defaults.
const (
	DefaultDuplicateWindow = 6 * time.Hour
	DefaultMaxInFlight     = 2
	DefaultAckWait         = 2 * time.Minute
	DefaultMaxFailures     = 10
	DefaultMaxMsgSize      = 1 << 20
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.StreamReplicas == 0 {
		c.StreamReplicas = 1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = DefaultMaxFailures
	}
	if c.MaxMsgSize == 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	return c
}

// validate reports every broken rule, one sentence each.
func (c Config) validate() error {
	var errs []error
	if c.StreamReplicas < 1 || c.StreamReplicas > 5 {
		errs = append(errs, fmt.Errorf("stream replicas must be between 1 and 5, got %d", c.StreamReplicas))
	}
	if c.DuplicateWindow < time.Second {
		errs = append(errs, fmt.Errorf("duplicate window must be at least 1s, got %s", c.DuplicateWindow))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("max in flight must be at least 1, got %d", c.MaxInFlight))
	}
	if c.AckWait < time.Second {
		errs = append(errs, fmt.Errorf("ack wait must be at least 1s, got %s", c.AckWait))
	}
	if c.MaxFailures < 1 {
		// A batch that can never succeed would otherwise be retried forever
		// instead of reaching the dead-letter stream.
		errs = append(errs, fmt.Errorf("max failures must be at least 1, got %d", c.MaxFailures))
	}
	if c.MaxMsgSize < 1024 {
		errs = append(errs, fmt.Errorf("max message size must be at least 1024 bytes, got %d", c.MaxMsgSize))
	}
	if c.DLQMaxAge < 0 {
		errs = append(errs, fmt.Errorf("dead-letter max age must not be negative, got %s", c.DLQMaxAge))
	}
	return errors.Join(errs...)
}
