package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qfetch/qfetch/internal/msg"
)

// State is the word /readyz answers with while a process is not ready. The
// set is fixed and holds no detail: the prober (and whoever can reach the
// port) learns which dependency is missing, never an error's text, which
// goes to the log.
type State string

// The readiness states, in the order a worker meets them.
const (
	StateStarting    State = "starting"    // the start checks have not all run yet
	StateNATS        State = "nats"        // NATS or JetStream is unreachable, or refuses this process
	StateStore       State = "store"       // the bucket is unreachable, missing or not writable
	StateQualys      State = "qualys"      // the Qualys login fails, or Qualys does not answer
	StatePaused      State = "paused"      // the fleet (or this worker) is paused by a fleet-wide fault (I6)
	StateWedged      State = "wedged"      // a batch could not be dead-lettered; the worker pulls other batches meanwhile
	StateUnavailable State = "unavailable" // any other reason; the log says which
)

var states = []State{StateStarting, StateNATS, StateStore, StateQualys, StatePaused, StateWedged, StateUnavailable}

// NotReady is a readiness error: the state /readyz answers with, and the
// cause, for the log.
type NotReady struct {
	State State
	Err   error
}

func (e *NotReady) Error() string {
	if e.Err == nil {
		return string(e.State)
	}
	return string(e.State) + ": " + e.Err.Error()
}

func (e *NotReady) Unwrap() error { return e.Err }

// Stater is an error that names its own readiness state (one of the
// fixed set), for errors made outside this package, such as a worker's.
type Stater interface {
	ReadyState() string
}

// StateOf is the readiness state err stands for: a NotReady's, a Stater's
// when it names a known state, nats for ErrNotConnected, else unavailable.
func StateOf(err error) State {
	var nr *NotReady
	if errors.As(err, &nr) && slices.Contains(states, nr.State) {
		return nr.State
	}
	var s Stater
	if errors.As(err, &s) && slices.Contains(states, State(s.ReadyState())) {
		return State(s.ReadyState())
	}
	if errors.Is(err, ErrNotConnected) || errors.Is(err, msg.ErrJetStreamUnavailable) {
		return StateNATS
	}
	return StateUnavailable
}

// Handler serves a long-running process's /healthz (alive), /readyz and
// /metrics. ready returns nil when the process can do its work, else why
// not: /readyz answers "ready" (200) or "not ready: <state>" (503) with
// the state word of StateOf, never the error's text.
func Handler(reg *prometheus.Registry, ready func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(rw, "not ready: "+string(StateOf(err)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(rw, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Readiness is a process's readiness: its checks in order, the first that
// fails deciding the state. It logs the state, with the cause, once per
// change, since /readyz answers with the word alone.
type Readiness struct {
	log *slog.Logger

	mu     sync.Mutex
	checks []func() error
	last   State // "" while ready, or before the first answer
	begun  bool
}

// NewReadiness is a readiness made of checks; Use replaces them.
func NewReadiness(log *slog.Logger, checks ...func() error) *Readiness {
	return &Readiness{log: log, checks: checks}
}

// Use replaces the checks: a process adds the ones that need parts its
// start checks built.
func (r *Readiness) Use(checks ...func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = checks
}

// Ready runs the checks; it is Handler's ready.
func (r *Readiness) Ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	for _, c := range r.checks {
		if err = c(); err != nil {
			break
		}
	}
	var st State
	if err != nil {
		st = StateOf(err)
	}
	if st != r.last || !r.begun {
		switch {
		case err == nil && r.begun:
			r.log.Info("ready", "was", string(r.last))
		case st == StateStarting:
			r.log.Info("not ready yet", "state", string(st), "cause", err)
		case err != nil:
			r.log.Warn("not ready", "state", string(st), "was", wasState(r.last, r.begun), "cause", err)
		}
		r.last, r.begun = st, true
	}
	return err
}

func wasState(s State, begun bool) string {
	switch {
	case !begun:
		return ""
	case s == "":
		return "ready"
	}
	return string(s)
}

// ErrNotConnected is a readiness error: the NATS connection is down.
var ErrNotConnected = errors.New("not connected to NATS")

// Server is a process's HTTP endpoint, listening from Listen on.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen opens addr, the value of the variable named, so that a bad address
// stops the process at start as a configuration error.
func Listen(addr, variable string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, variable, err)
	}
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// Addr is the address listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown; it returns nil then.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops the server, giving requests in progress 5 s.
func (s *Server) Shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
}

// Connected is the readiness of a process that needs NATS.
func Connected(nc *nats.Conn) func() error {
	return func() error {
		if !nc.IsConnected() {
			return ErrNotConnected
		}
		return nil
	}
}
