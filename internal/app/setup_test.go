package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testenv"
)

func TestSetupRetry(t *testing.T) {
	unavailable := failure.FleetWide(fmt.Errorf("%w: no meta leader", msg.ErrJetStreamUnavailable))
	timeout := fmt.Errorf("create bucket %s: %w", ledger.BucketRuns, context.DeadlineExceeded)
	refused := failure.FleetWide(fmt.Errorf("%w (what needed it: %w)",
		&natsperm.RefusedError{Op: "publish to", Subject: "$JS.API.STREAM.CREATE.X"}, nats.ErrNoResponders))
	missing := failure.Retryable(fmt.Errorf("stream QFETCH_BATCHES: %w", msg.ErrNotSetUp))
	noPeers := fmt.Errorf("msg: create stream QFETCH_BATCHES: %w",
		&jetstream.APIError{Code: 400, ErrorCode: 10005, Description: "no suitable peers for placement"})
	otherAnswer := fmt.Errorf("msg: create stream QFETCH_BATCHES: %w",
		&jetstream.APIError{Code: 400, ErrorCode: 10074, Description: "replicas > 1 not supported in non-clustered mode"})
	for _, tc := range []struct {
		name  string
		errs  []error // what each try returns; the try after the last succeeds
		tries int
		want  error // nil: set up
	}{
		{"answered at once", nil, 1, nil},
		{"an election: timeouts, then an answer", []error{timeout, timeout}, 3, nil},
		{"quorum back within the wait", []error{unavailable, unavailable, unavailable}, 4, nil},
		{"a refusal is not waited out", []error{refused}, 1, nats.ErrPermissionViolation},
		{"an answered error is not asked again", []error{missing}, 1, msg.ErrNotSetUp},
		{"no answer for the whole wait", repeat(unavailable, 100), 0, msg.ErrJetStreamUnavailable},
		{"a server heard from within the wait", []error{noPeers, noPeers}, 3, nil},
		{"too few servers for the whole wait", repeat(noPeers, 100), 0, noPeers},
		{"another answer about replicas is not asked again", []error{otherAnswer}, 1, otherAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := setupRetry{wait: 300 * time.Millisecond, base: 10 * time.Millisecond, max: 40 * time.Millisecond}
			tries := 0
			_, err := p.do(t.Context(), slog.New(slog.DiscardHandler), func() (JetStream, error) {
				tries++
				if tries <= len(tc.errs) {
					return JetStream{}, tc.errs[tries-1]
				}
				return JetStream{}, nil
			})
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("err = %v after %d tries", err, tries)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want one wrapping %v", err, tc.want)
			case tc.tries > 0 && tries != tc.tries:
				t.Fatalf("%d tries, want %d", tries, tc.tries)
			case tc.tries == 0 && (tries < 3 || tries >= len(tc.errs)):
				t.Fatalf("%d tries in the wait, want a few", tries)
			}
			if tc.want == nil {
				return
			}
			// Too few servers is an operator's to mend: fleet-wide.
			want := failure.ClassOf(tc.errs[len(tc.errs)-1])
			if msg.NoPeers(err) && tries > 1 {
				want = failure.ClassFleetWide
			}
			if failure.ClassOf(err) != want {
				t.Fatalf("class %v, want %v", failure.ClassOf(err), want)
			}
		})
	}
}

func TestSetupRetryStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	p := setupRetry{wait: time.Hour, base: time.Hour, max: time.Hour}
	unavailable := failure.FleetWide(fmt.Errorf("%w: no meta leader", msg.ErrJetStreamUnavailable))
	done := make(chan error, 1)
	go func() {
		_, err := p.do(ctx, slog.New(slog.DiscardHandler), func() (JetStream, error) {
			return JetStream{}, unavailable
		})
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, msg.ErrJetStreamUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func repeat(err error, n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// TestSetUpWaitsOutALostQuorum: a planner whose set-up meets a cluster
// without quorum (two nodes of three down) asks again, and is set up once
// the nodes are back, instead of failing its pass.
func TestSetUpWaitsOutALostQuorum(t *testing.T) {
	s := Sections{SetupWait: 3 * time.Minute}
	c, js := lostQuorum(t, &s)
	retries := &retryLog{seen: make(chan error, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := setUp(t.Context(), js, s, RolePlanner, slog.New(retries))
		done <- err
	}()
	var first error
	select {
	case first = <-retries.seen:
	case err := <-done:
		t.Fatalf("set-up without quorum returned before asking again: %v", err)
	}
	if !msg.Unanswered(first) {
		t.Fatalf("the set-up asked again after %v", first)
	}
	c.Start(0)
	c.Start(1)
	if err := <-done; err != nil {
		t.Fatalf("set-up once the quorum was back: %v", err)
	}
}

// lostQuorum sets JetStream up as a planner on a three-node cluster, with
// s's wait, then stops two nodes and waits until none leads the meta
// group; it returns the cluster and a JetStream on the survivor.
func lostQuorum(t *testing.T, s *Sections) (*testenv.NATSCluster, jetstream.JetStream) {
	t.Helper()
	c := testenv.StartNATSCluster(t)
	s.NATS = config.NATS{URL: c.URLs(), StreamReplicas: 3}
	js := testenv.Connect(t, c.URLs())
	c.SetUp("the first set-up on a new cluster", func(ctx context.Context) error {
		_, err := setUp(ctx, js, *s, RolePlanner, slog.New(slog.DiscardHandler))
		return err
	})
	js.Conn().Close()
	c.Shutdown(0)
	c.Shutdown(1)
	testenv.Eventually(t, time.Minute, func() bool { return c.MetaLeader() < 0 }, "no meta leader with one node of three")
	return c, testenv.Connect(t, c.URL(2))
}

// retryLog is a slog handler that hands over the error of the first
// "asking again" record.
type retryLog struct {
	once sync.Once
	seen chan error
}

func (h *retryLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *retryLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *retryLog) WithGroup(string) slog.Handler            { return h }
func (h *retryLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "error" {
			h.once.Do(func() { h.seen <- err })
			return false
		}
		return true
	})
	return nil
}

// TestSetUpWithTooFewServers: a planner's set-up asked for more replicas
// than the cluster counts servers up is answered "no suitable peers" (what
// a new cluster answers R3 until its meta leader has heard from every
// node, which CI met); it asks again for its wait, then fails saying what
// to look at, with the server's answer still to be found by errors.As.
func TestSetUpWithTooFewServers(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	s := Sections{SetupWait: 2 * time.Second}
	s.NATS = config.NATS{URL: c.URLs(), StreamReplicas: 5}
	_, js := testenv.ConnectCluster(t, c.URLs())
	retries := &retryLog{seen: make(chan error, 1)}
	_, err := setUp(t.Context(), js, s, RolePlanner, slog.New(retries))
	if !msg.NoPeers(err) {
		t.Fatalf("set-up of R5 on three servers: %v, want a placement refusal", err)
	}
	select {
	case first := <-retries.seen:
		if !msg.NoPeers(first) {
			t.Fatalf("asked again after %v", first)
		}
	default:
		t.Fatal("the set-up did not ask again")
	}
	if code := ExitCode(err); code != ExitFleetWide {
		t.Fatalf("exit code %d, want %d: an operator must start servers or lower the replicas", code, ExitFleetWide)
	}
	if !strings.Contains(err.Error(), "QFETCH_NATS_STREAM_REPLICAS") {
		t.Fatalf("the error %q does not name the setting to look at", err)
	}
	if _, err := js.Stream(t.Context(), msg.StreamBatches); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("the queue's stream after a refused set-up: %v", err)
	}
}
