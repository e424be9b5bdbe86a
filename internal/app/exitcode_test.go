package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// TestExitCode is the README's exit-code table, row by row, over the
// errors the mains get.
func TestExitCode(t *testing.T) {
	// An S3 endpoint nothing listens on, as a real call sees it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	store, err := S3(config.S3{Endpoint: closed, Bucket: "qfetch", AccessKey: "access", SecretKey: "secret-0123456789"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	refused := store.Check(context.Background())

	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"done", nil, ExitOK},
		{"retries spent", failure.Retryable(errors.New("503")), ExitFailed},
		{"permanent", failure.Permanent(errors.New("bad parameter")), ExitFailed},
		{"unclassified", errors.New("boom"), ExitFailed},
		{"configuration", fmt.Errorf("%w:\nQFETCH_BATCH_SIZE: must be between 1 and 10000, got 0", ErrConfig), ExitConfig},
		{"fleet-wide", failure.FleetWide(errors.New("401/2000")), ExitFleetWide},
		{"S3 connection refused", refused, ExitFleetWide},
		{"interrupted", fmt.Errorf("interrupted: %w", context.Canceled), ExitInterrupted},
		// A JetStream cluster that lost its quorum answers 10008: a pass
		// that meets it fails fleet-wide. A missing stream is no such fault.
		{"JetStream without quorum", msg.ClassifyAPI(fmt.Errorf("plan: recording progress: %w",
			&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"})), ExitFleetWide},
		{"stream missing", msg.ClassifyAPI(fmt.Errorf("plan: %w", jetstream.ErrStreamNotFound)), ExitFailed},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}
