package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// TestExporterServesRunMetrics runs `qfetch exporter` as main would against
// a real NATS and MinIO, scrapes it, and stops it with a signal's cancel.
func TestExporterServesRunMetrics(t *testing.T) {
	url := testenv.NATSURL(t)
	m := testenv.MinIO(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for k, v := range map[string]string{
		"QFETCH_NATS_URL": url, "QFETCH_S3_ENDPOINT": m.Endpoint, "QFETCH_S3_SECURE": "false",
		"QFETCH_S3_ACCESS_KEY": m.AccessKey, "QFETCH_S3_SECRET_KEY": m.SecretKey, "QFETCH_S3_BUCKET": m.Bucket,
		"QFETCH_EXPORTER_LISTEN": addr, "QFETCH_EXPORTER_EVERY": "1s", "QFETCH_LOG_LEVEL": "error",
	} {
		t.Setenv(k, v)
	}
	// The workers' consumer exists with a cap of 3; the exporter, with the
	// default 2 in its environment, must leave it alone (I5).
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := msg.Setup(t.Context(), js, msg.Config{MaxInFlight: 3}); err != nil {
		t.Fatal(err)
	}
	// The planner's part: the exporter creates no bucket (#17).
	if _, err := ledger.Setup(t.Context(), js, ledger.Config{}); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() }) // also when the test fails early
	wg.Go(func() {
		var out, errs strings.Builder
		done <- dispatch(ctx, []string{"exporter"}, &out, &errs)
	})
	var body string
	testenv.Eventually(t, 20*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, "qfetch_status_refresh_timestamp_seconds ")
	}, "the exporter serving run-level metrics")
	for _, want := range []string{"qfetch_queue_max_in_flight 3\n", "qfetch_dead_letters 0\n", `qfetch_runs{state="complete"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d after cancel", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("qfetch exporter did not stop")
	}
}
