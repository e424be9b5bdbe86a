// Package app is qfetch's one composition root: it builds the parts from
// configuration (logger, Qualys client, store, queue, ledger) and each role
// (planner, worker, finisher, reporter) from parts.
//
// The mains, `qfetch local`, the bench and the tests all build roles here;
// it holds wiring only, every rule lives in the package that owns it.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// Version is stamped at build time with -ldflags "-X …/internal/app.Version=…".
var Version = "dev"

// Revision may be stamped the same way (…/internal/app.Revision=…) where the
// go command records no VCS stamp: the image builds from a copied tree.
var Revision = ""

// Exit codes shared by the binaries (README, "Exit codes").
const (
	ExitOK          = 0 // done, or nothing to do
	ExitFailed      = 1 // the run failed: retries spent or a permanent error
	ExitConfig      = 2 // configuration missing or invalid
	ExitFleetWide   = 3 // credentials, access or a missing bucket: an operator must act
	ExitInterrupted = 130
)

// ErrConfig marks a configuration error.
var ErrConfig = errors.New("configuration")

// ExitCode maps a main's error to its exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrConfig):
		return ExitConfig
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	case failure.ClassOf(err) == failure.ClassFleetWide:
		return ExitFleetWide
	default:
		return ExitFailed
	}
}

// LoadConfig fills spec from the environment; errors wrap ErrConfig.
func LoadConfig(spec any) error {
	if err := config.Load(config.Prefix, spec); err != nil {
		return fmt.Errorf("%w:\n%w", ErrConfig, err)
	}
	return nil
}

// Logger builds the process logger on stderr.
func Logger(c config.Log) (*slog.Logger, error) {
	return logging.New(os.Stderr, c.Format, c.Level, logging.IsTerminal(os.Stderr))
}

// Qualys builds the API client.
func Qualys(c config.Qualys) (*qualys.Client, error) {
	cl, err := qualys.New(qualys.Config{
		BaseURL:        c.URL,
		Username:       c.Username,
		Password:       c.Password.Reveal(),
		APIVersion:     c.APIVersion,
		UserAgent:      "qfetch/" + Version,
		CAFile:         c.CAFile,
		ConnectTimeout: c.ConnectTimeout,
		HeaderTimeout:  c.HeaderTimeout,
		IdleTimeout:    c.IdleTimeout,
		MinRateBytes:   c.MinRateBytes,
		MinRateWindow:  c.MinRateWindow,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cl, nil
}

// S3 builds the object store; partSize 0 is the default part size.
func S3(c config.S3, partSize uint64) (*objstore.S3, error) {
	s, err := objstore.NewS3(objstore.S3Config{
		Endpoint:  c.Endpoint,
		Secure:    c.Secure,
		AccessKey: c.AccessKey.Reveal(),
		SecretKey: c.SecretKey.Reveal(),
		Region:    c.Region,
		Bucket:    c.Bucket,
		CAFile:    c.CAFile,
		PartSize:  partSize,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return s, nil
}

// Connect opens the NATS connection. It keeps reconnecting for as long as
// the process lives: a NATS restart is an outage to wait out, not an exit.
func Connect(c config.NATS, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		// Unreachable NATS fails every worker alike.
		return nil, nil, failure.FleetWide(fmt.Errorf("connecting to NATS: %w", err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream: %w", err)
	}
	return nc, js, nil
}

// JetStream is the batch transport and the run ledger on one connection;
// most roles use both.
type JetStream struct {
	*msg.Queue
	*ledger.Ledger
}

// Queue sets up the ledger's buckets, the streams and the consumer for a
// process in role; only a worker tunes an existing consumer to its settings.
func Queue(ctx context.Context, js jetstream.JetStream, c config.NATS, f config.Fleet, ackWait time.Duration, role Role) (JetStream, error) {
	l, err := ledger.Setup(ctx, js, ledger.Config{Replicas: c.StreamReplicas})
	if err != nil {
		return JetStream{}, fmt.Errorf("setting up JetStream: %w", err)
	}
	q, err := msg.Setup(ctx, js, msg.Config{StreamReplicas: c.StreamReplicas, MaxInFlight: f.MaxInFlight,
		AckWait: ackWait, AdoptConsumer: !role.ownsConsumer()})
	if err != nil {
		return JetStream{}, fmt.Errorf("setting up JetStream: %w", err)
	}
	return JetStream{Queue: q, Ledger: l}, nil
}

// Open binds to the ledger, streams and consumer a planner or worker set up,
// creating and changing nothing: for operator commands.
func Open(ctx context.Context, js jetstream.JetStream) (JetStream, error) {
	l, err := ledger.Open(ctx, js)
	if err != nil {
		return JetStream{}, err
	}
	q, err := msg.Open(ctx, js)
	if err != nil {
		return JetStream{}, err
	}
	return JetStream{Queue: q, Ledger: l}, nil
}

// Owner names this process for locks and records: the pod name in a
// cluster, else the host name and PID.
func Owner() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", h, os.Getpid())
}
