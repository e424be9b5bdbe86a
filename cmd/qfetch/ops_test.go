package main

import (
	"context"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestOperatorCommandsExitCodes runs the operator commands as main would,
// against a real NATS, before and after qfetch's objects exist.
func TestOperatorCommandsExitCodes(t *testing.T) {
	url := testenv.NATSURL(t)
	t.Setenv("QFETCH_NATS_URL", url)
	run := func(args ...string) (int, string, string) {
		var out, errs strings.Builder
		code := dispatch(context.Background(), args, &out, &errs)
		return code, out.String(), errs.String()
	}
	// Nothing set up: a fleet-wide fault, saying what is missing.
	if code, _, errs := run("runs"); code != 3 || !strings.Contains(errs, "not set up") {
		t.Errorf("runs on an empty server: exit %d, %q", code, errs)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := msg.Setup(t.Context(), js, msg.Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Setup(t.Context(), js, ledger.Config{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"runs"}, 0, "no runs yet"},
		{[]string{"runs", "--json"}, 0, "[]"},
		{[]string{"dlq", "list"}, 0, "no dead letters"},
		{[]string{"dlq"}, 2, ""},
		{[]string{"dlq", "frobnicate"}, 2, ""},
		{[]string{"dlq", "show"}, 2, ""},
		{[]string{"dlq", "show", "x"}, 2, ""},
		{[]string{"dlq", "show", "9"}, 1, ""},
		{[]string{"dlq", "replay"}, 2, ""},
		{[]string{"dlq", "drop", "--run", "r1"}, 0, "no dead letters to drop"},
		{[]string{"watermark", "show"}, 0, "no watermark yet"},
		{[]string{"watermark", "set", "--time", "yesterday"}, 2, ""},
		{[]string{"watermark", "set", "--time", "2026-01-01T00:00:00Z", "--reason", "test"}, 2, ""},
		{[]string{"watermark", "set", "--time", "2026-01-01T00:00:00Z", "--reason", "test", "--yes"}, 0, "watermark moved"},
		{[]string{"status"}, 1, ""},
		// A run ID that cannot be one is a usage error; a wildcard is not
		// a run (it would select every run's dead letters).
		{[]string{"status", "bad id!"}, 2, ""},
		{[]string{"dlq", "list", "--run", "bad id"}, 2, ""},
		{[]string{"dlq", "list", "--run", "*"}, 2, ""},
		{[]string{"dlq", "drop", "--yes", "--run", "*"}, 2, ""},
		{[]string{"dlq", "drop", "--yes", "--run", ">"}, 2, ""},
	} {
		code, out, errs := run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("qfetch %v: exit %d, want %d; stdout %q, want %q; stderr %q", tc.args, code, tc.code, out, tc.out, errs)
		}
	}
}
