// Package app is qfetch's one composition root: it builds the parts from
// configuration (logger, Qualys client, store, queue, ledger) and each role
// (planner, worker, finisher, reporter) from parts.
//
// The mains, `qfetch local`, the bench and the tests all build roles here;
// it holds wiring only, every rule lives in the package that owns it.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/tlsca"
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
	case refusedHere.Load() != nil:
		// NATS refused this process something on the way (logged then,
		// naming the operation): whatever failure ended it, credentials
		// that do not fit its role are the cause an operator must fix.
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
	cl, err := qualys.New(QualysConfig(c))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return cl, nil
}

// QualysConfig is the API client's configuration from its section.
func QualysConfig(c config.Qualys) qualys.Config {
	return qualys.Config{
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
	}
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
//
// TLS is used with the CA (and client certificate) c names; the process
// authenticates with its role's NKey seed or creds file. A subject the
// server refuses this process is logged once, naming the operation, and
// kept: [Refused] turns the failure of the request that needed it into a
// fleet-wide error (exit code 3).
func Connect(c config.NATS, name string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	refusals := &natsperm.Refusals{}
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
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if re, first := refusals.Note(err); re != nil {
				refusedHere.CompareAndSwap(nil, re)
				if first {
					log.Error("NATS refused an operation to this process's credentials; an operator must give its role the right NATS user",
						"operation", re.Operation(), "subject", re.Subject)
				}
				return
			}
			log.Warn("NATS reported an error", "err", err)
		}),
	}
	auth, err := natsAuth(c)
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, auth...)
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		// Unreachable NATS fails every worker alike; so do TLS and
		// credentials the server refuses.
		return nil, nil, failure.FleetWide(fmt.Errorf("connecting to NATS: %w", err))
	}
	refused.Store(nc, refusals)
	nc.SetClosedHandler(func(nc *nats.Conn) { refused.Delete(nc) })
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("JetStream: %w", err)
	}
	return nc, js, nil
}

// natsAuth are the TLS and credential options c asks for. The seed and
// keys stay in their files: nats.go reads them when it needs them.
func natsAuth(c config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	if c.CAFile != "" {
		pool, err := tlsca.Pool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: QFETCH_NATS_CA_FILE: %w", ErrConfig, err)
		}
		// The pool replaces the system roots only in adding to them.
		opts = append(opts, nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	}
	if c.CertFile != "" {
		opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			// nats.go's errors name no part of the seed.
			return nil, fmt.Errorf("%w: QFETCH_NATS_NKEY_FILE: %w", ErrConfig, err)
		}
		opts = append(opts, o)
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	return opts, nil
}

// refused holds each open connection's refusals (*natsperm.Refusals).
var refused sync.Map

// refusedHere is the first refusal any connection of this process met: see
// ExitCode.
var refusedHere atomic.Pointer[natsperm.RefusedError]

// Refused returns err as a fleet-wide error naming what NATS refused nc, if
// it refused nc anything; otherwise err as it is. A refused request only
// times out (the server's refusal comes apart from it), so a failure on a
// connection that was refused is taken as that refusal: credentials that
// do not fit the role are an operator's to fix, for every pod alike.
func Refused(nc *nats.Conn, err error) error {
	if err == nil || nc == nil {
		return err
	}
	var re *natsperm.RefusedError
	if errors.As(err, &re) {
		return err
	}
	v, ok := refused.Load(nc)
	if !ok {
		return err
	}
	if rerr := v.(*natsperm.Refusals).Err(); rerr != nil {
		return failure.FleetWide(fmt.Errorf("%w (what needed it: %w)", rerr, err))
	}
	return err
}

// JetStream is the batch transport and the run ledger on one connection;
// most roles use both.
type JetStream struct {
	*msg.Queue
	*ledger.Ledger
	// Tables is the analyst tables' conversions; nil where the stream is
	// not set up (an operator command on a deployment before it).
	Tables *msg.TableQueue
}

// Queue sets up the ledger's buckets, the streams and the consumer for a
// process in role, as far as the role's NATS rights go (natsperm.For):
// every role creates what is missing; only a planner brings existing
// streams and buckets to its settings, and only a worker creates and tunes
// the consumer (the fleet cap, I5); the others bind to it when it exists.
func Queue(ctx context.Context, js jetstream.JetStream, c config.NATS, f config.Fleet, ackWait time.Duration, role Role) (JetStream, error) {
	l, err := ledger.Setup(ctx, js, ledger.Config{Replicas: c.StreamReplicas, KeepBuckets: !role.ownsStreams()})
	if err != nil {
		return JetStream{}, Refused(js.Conn(), fmt.Errorf("setting up JetStream: %w", err))
	}
	q, err := msg.Setup(ctx, js, msg.Config{StreamReplicas: c.StreamReplicas, MaxInFlight: f.MaxInFlight,
		AckWait: ackWait, AdoptConsumer: !role.ownsConsumer(), KeepStreams: !role.ownsStreams()})
	if err != nil {
		return JetStream{}, Refused(js.Conn(), fmt.Errorf("setting up JetStream: %w", err))
	}
	t, err := msg.SetupTables(ctx, js, msg.TablesConfig{Replicas: c.StreamReplicas,
		AdoptConsumer: !role.ownsConsumer(), KeepStreams: !role.ownsStreams()})
	if err != nil {
		return JetStream{}, Refused(js.Conn(), fmt.Errorf("setting up JetStream: %w", err))
	}
	return JetStream{Queue: q, Ledger: l, Tables: t}, nil
}

// Open binds to the ledger, streams and consumer a planner or worker set up,
// creating and changing nothing: for operator commands.
func Open(ctx context.Context, js jetstream.JetStream) (JetStream, error) {
	l, err := ledger.Open(ctx, js)
	if err != nil {
		return JetStream{}, Refused(js.Conn(), err)
	}
	q, err := msg.Open(ctx, js)
	if err != nil {
		return JetStream{}, Refused(js.Conn(), err)
	}
	t, err := msg.OpenTables(ctx, js)
	if err != nil && !errors.Is(err, msg.ErrNotSetUp) {
		return JetStream{}, Refused(js.Conn(), err)
	}
	return JetStream{Queue: q, Ledger: l, Tables: t}, nil
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
