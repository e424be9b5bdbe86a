package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/natsperm"
)

type stater struct{ state string }

func (s stater) Error() string {
	return "wedged: batch 7 of run X could not be dead-lettered: secret-ish detail"
}
func (s stater) ReadyState() string { return s.state }

func TestStateOf(t *testing.T) {
	tests := []struct {
		err  error
		want app.State
	}{
		{&app.NotReady{State: app.StateStore, Err: errors.New("bucket missing")}, app.StateStore},
		{fmt.Errorf("wrapped: %w", &app.NotReady{State: app.StateQualys}), app.StateQualys},
		{&app.NotReady{State: "made-up", Err: errors.New("x")}, app.StateUnavailable},
		{app.ErrNotConnected, app.StateNATS},
		{fmt.Errorf("readiness: %w", app.ErrNotConnected), app.StateNATS},
		{stater{"wedged"}, app.StateWedged},
		{fmt.Errorf("worker: %w", stater{"paused"}), app.StatePaused},
		{stater{"bogus"}, app.StateUnavailable},
		{errors.New("https://user:pass@host refused"), app.StateUnavailable},
	}
	for _, tt := range tests {
		if got := app.StateOf(tt.err); got != tt.want {
			t.Errorf("StateOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestReadyz: /readyz answers the state word, never the error's text, and
// the log has the cause once per change of state.
func TestReadyz(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var cur error
	r := app.NewReadiness(log, func() error { return cur })
	srv := httptest.NewServer(app.Handler(prometheus.NewRegistry(), r.Ready))
	t.Cleanup(srv.Close)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	steps := []struct {
		err      error
		code     int
		body     string
		newLines int
	}{
		{&app.NotReady{State: app.StateStarting}, 503, "not ready: starting", 1},
		{&app.NotReady{State: app.StateStore, Err: errors.New(`bucket "b" does not exist`)}, 503, "not ready: store", 1},
		{&app.NotReady{State: app.StateStore, Err: errors.New(`bucket "b" does not exist`)}, 503, "not ready: store", 0},
		{nil, 200, "ready", 1},
		{nil, 200, "ready", 0},
		{stater{"wedged"}, 503, "not ready: wedged", 1},
		{errors.New("something else entirely"), 503, "not ready: unavailable", 1},
	}
	lines := 0
	for i, s := range steps {
		cur = s.err
		code, body := get()
		if code != s.code || body != s.body {
			t.Errorf("step %d: %d %q, want %d %q", i, code, body, s.code, s.body)
		}
		n := strings.Count(logs.String(), "\n")
		if n-lines != s.newLines {
			t.Errorf("step %d: %d new log lines, want %d:\n%s", i, n-lines, s.newLines, logs.String())
		}
		lines = n
	}
	if !strings.Contains(logs.String(), `does not exist`) || !strings.Contains(logs.String(), "state=store") {
		t.Errorf("the log lacks the cause:\n%s", logs.String())
	}
}

// TestGatePass: every failing check is tried again until it passes, the
// gate's state is the first failing check's, and a configuration error
// ends the wait.
func TestGatePass(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	t.Run("until every check passes", func(t *testing.T) {
		g := app.NewGate()
		if s := app.StateOf(g.Ready()); s != app.StateStarting {
			t.Fatalf("a new gate is %q", s)
		}
		var storeTries, loginTries int
		var states, storeStates []app.State
		checks := []app.StartCheck{
			{State: app.StateNATS, Name: "nats", Max: time.Millisecond, Run: func(context.Context) error {
				states = append(states, app.StateOf(g.Ready()))
				return nil
			}},
			{State: app.StateStore, Name: "store", Max: 5 * time.Millisecond, Run: func(context.Context) error {
				storeStates = append(storeStates, app.StateOf(g.Ready()))
				if storeTries++; storeTries < 3 {
					return errors.New("bucket missing")
				}
				return nil
			}},
			{State: app.StateQualys, Name: "login", Max: 5 * time.Millisecond, Run: func(context.Context) error {
				states = append(states, app.StateOf(g.Ready()))
				if loginTries++; loginTries < 5 {
					return errors.New("bad login")
				}
				return nil
			}},
		}
		if err := g.Pass(t.Context(), log, time.Millisecond, checks...); err != nil {
			t.Fatal(err)
		}
		if g.Ready() != nil || storeTries != 3 || loginTries != 5 {
			t.Errorf("ready %v after %d store and %d login tries", g.Ready(), storeTries, loginTries)
		}
		// Passed checks are not run again (nats ran once); the state is the
		// first failing check's: store while it fails, then qualys.
		if want := []app.State{app.StateStarting, app.StateStore, app.StateStore}; !slices.Equal(storeStates, want) {
			t.Errorf("states seen by the store check %v, want %v", storeStates, want)
		}
		if len(states) != 1+5 || states[0] != app.StateStarting || states[1] != app.StateStarting || states[5] != app.StateQualys {
			t.Errorf("states seen by the nats check, then the login check: %v", states)
		}
	})
	t.Run("configuration error", func(t *testing.T) {
		g := app.NewGate()
		bad := fmt.Errorf("%w: QFETCH_NATS_CA_FILE: no such file", app.ErrConfig)
		err := g.Pass(t.Context(), log, time.Millisecond, app.StartCheck{State: app.StateNATS, Max: time.Millisecond,
			Run: func(context.Context) error { return bad }})
		if app.ExitCode(err) != app.ExitConfig {
			t.Errorf("Pass: %v, exit code %d", err, app.ExitCode(err))
		}
	})
	t.Run("refused by NATS", func(t *testing.T) {
		// Credentials the server refuses, or a role's operation it
		// refuses: no wait fixes the pod's Secret; exit 3 at once.
		for _, refused := range []error{
			failure.FleetWide(fmt.Errorf("connecting to NATS: %w", nats.ErrAuthorization)),
			failure.FleetWide(&natsperm.RefusedError{Subject: "$JS.API.CONSUMER.CREATE.QFETCH_BATCHES.workers"}),
		} {
			g := app.NewGate()
			runs := 0
			err := g.Pass(t.Context(), log, time.Millisecond, app.StartCheck{State: app.StateNATS, Max: time.Hour,
				Run: func(context.Context) error { runs++; return refused }})
			if app.ExitCode(err) != app.ExitFleetWide || runs != 1 {
				t.Errorf("Pass on %v: %v, exit code %d after %d runs; want 3 after 1", refused, err, app.ExitCode(err), runs)
			}
		}
	})
	t.Run("stopped", func(t *testing.T) {
		g := app.NewGate()
		ctx, cancel := context.WithCancel(t.Context())
		err := g.Pass(ctx, log, time.Millisecond, app.StartCheck{State: app.StateStore, Max: time.Hour,
			Run: func(context.Context) error { cancel(); return errors.New("down") }})
		if app.ExitCode(err) != app.ExitInterrupted || app.StateOf(g.Ready()) != app.StateStarting {
			t.Errorf("Pass: %v, exit code %d, state %s", err, app.ExitCode(err), app.StateOf(g.Ready()))
		}
	})
}
