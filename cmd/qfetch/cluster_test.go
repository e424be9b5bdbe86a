package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

// connectedNode is the cluster node a client named name is connected to,
// or -1.
func connectedNode(t *testing.T, c *testenv.NATSCluster, name string) int {
	t.Helper()
	for i := range testenv.ClusterSize {
		s := c.Server(i)
		if s == nil {
			continue
		}
		cz, err := s.Connz(&server.ConnzOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ci := range cz.Conns {
			if ci.Name == name {
				return i
			}
		}
	}
	return -1
}

// TestExporterAndOpsOnCluster: with QFETCH_NATS_URL naming a three-node
// cluster, the exporter goes on refreshing through a surviving node when
// the node it is connected to goes, without a restart; an operator
// command works with that node down; with a second node down (quorum
// lost) it exits 3.
func TestExporterAndOpsOnCluster(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	m := testenv.MinIO(t)
	_, js := testenv.ConnectCluster(t, c.URLs(), nats.ReconnectWait(100*time.Millisecond))
	var q *msg.Queue
	c.SetUp("the ledger and the queue on a new cluster", func(ctx context.Context) error {
		if _, err := ledger.Setup(ctx, js, ledger.Config{Replicas: 3}); err != nil {
			return err
		}
		var err error
		q, err = msg.Setup(ctx, js, msg.Config{StreamReplicas: 3})
		return err
	})
	p := startExporter(t, map[string]string{
		"QFETCH_NATS_URL": c.URLs(), "QFETCH_NATS_STREAM_REPLICAS": "3",
		"QFETCH_S3_ENDPOINT": m.Endpoint, "QFETCH_S3_SECURE": "false",
		"QFETCH_S3_ACCESS_KEY": m.AccessKey, "QFETCH_S3_SECRET_KEY": m.SecretKey, "QFETCH_S3_BUCKET": m.Bucket,
		"QFETCH_EXPORTER_EVERY": "1s", "QFETCH_LOG_FORMAT": "json",
	})
	refreshed := func() float64 { v, _ := p.metric("qfetch_status_refresh_timestamp_seconds"); return v }
	testenv.Eventually(t, time.Minute, func() bool { return refreshed() > 0 }, "the exporter refreshing")

	on := connectedNode(t, c, "qfetch-exporter")
	if on < 0 {
		t.Fatal("the exporter is connected to no node")
	}
	c.Shutdown(on)
	lost := refreshed()
	testenv.Eventually(t, time.Minute, func() bool { return refreshed() > lost+1 },
		"the exporter refreshing again through a surviving node")
	if got := connectedNode(t, c, "qfetch-exporter"); got < 0 || got == on {
		t.Fatalf("the exporter is on node %d after node %d went", got, on)
	}

	run := func(args ...string) (int, string) {
		var out, errs strings.Builder
		code := dispatch(context.Background(), args, &out, &errs)
		return code, errs.String()
	}
	if code, errs := run("runs"); code != 0 {
		t.Fatalf("qfetch runs with one node of three down: exit %d, %s", code, errs)
	}

	c.Shutdown((on + 1) % testenv.ClusterSize)
	testenv.Eventually(t, time.Minute, func() bool {
		return errors.Is(q.Available(t.Context()), msg.ErrJetStreamUnavailable) &&
			errors.Is(msg.Available(t.Context(), js), msg.ErrJetStreamUnavailable)
	}, "the cluster finding its quorum lost")
	if code, errs := run("runs"); code != 3 {
		t.Fatalf("qfetch runs without quorum: exit %d, %s; want 3", code, errs)
	}
}
