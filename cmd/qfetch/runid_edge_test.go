package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestInvalidRunIDIsUsage: a run ID that cannot be one is a usage
// error (exit 2), and a wildcard is not a run.
func TestInvalidRunIDIsUsage(t *testing.T) {
	url := testenv.NATSURL(t)
	t.Setenv("QFETCH_NATS_URL", url)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	q, err := msg.Setup(t.Context(), js, msg.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// One dead letter of a real-looking run.
	if _, err := js.Publish(t.Context(), msg.BatchSubject("r1"), []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	m, err := q.Next(t.Context(), 2*time.Second)
	if err != nil || m == nil {
		t.Fatalf("Next: %v", err)
	}
	if err := q.DeadLetter(t.Context(), m, "test", nil); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"status", "bad id!"},
		{"dlq", "list", "--run", "bad id"},
		{"dlq", "drop", "--yes", "--run", "*"},
	} {
		var out, errs strings.Builder
		if code := dispatch(context.Background(), args, &out, &errs); code != 2 {
			t.Errorf("qfetch %q: exit %d, want 2 (usage); stdout %q stderr %q", args, code, out.String(), errs.String())
		}
	}
}
