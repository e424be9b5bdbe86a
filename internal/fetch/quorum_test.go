package fetch_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
)

// clusterWorld is a worker's world on an embedded three-node JetStream
// cluster, everything at R3: the connection starts on n1, the node the
// tests keep. Detection calls can be held at the simulator (hold), so that
// a batch is in flight while the cluster loses nodes.
type clusterWorld struct {
	t       *testing.T
	c       *testenv.NATSCluster
	nc      *nats.Conn
	q       app.JetStream
	parts   app.Parts
	batches []msg.Batch

	holding atomic.Bool
	entered chan struct{} // one value per detection call that reached the simulator
	release chan struct{}
	relOnce sync.Once
}

func newClusterWorld(t *testing.T, hosts int64, batchSize int, ackWait time.Duration) *clusterWorld {
	t.Helper()
	w := &clusterWorld{t: t, c: testenv.StartNATSCluster(t), entered: make(chan struct{}, 100), release: make(chan struct{})}
	t.Cleanup(w.releaseCalls)
	sim := qualysim.New(qualysim.Config{Seed: 3, Hosts: hosts, RateLimit: qualysim.Off, ConcurrencyLimit: qualysim.Off})
	t.Cleanup(sim.Close)
	sim.Advance(10 * 24 * time.Hour)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if w.holding.Load() && strings.HasSuffix(r.URL.Path, "/vm/detection/") {
			w.entered <- struct{}{}
			select {
			case <-w.release:
			case <-r.Context().Done():
				return
			}
		}
		sim.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	nc, js := testenv.ConnectCluster(t, w.c.URLs(), nats.DontRandomize(), nats.ReconnectWait(100*time.Millisecond))
	w.nc = nc
	ctx := t.Context()
	var mq *msg.Queue
	var l *ledger.Ledger
	w.c.SetUp("the queue and the ledger on a new cluster", func(ctx context.Context) (err error) {
		if mq, err = msg.Setup(ctx, js, msg.Config{StreamReplicas: 3, MaxInFlight: 4, AckWait: ackWait}); err != nil {
			return err
		}
		l, err = ledger.Setup(ctx, js, ledger.Config{Replicas: 3})
		return err
	})
	w.q = app.JetStream{Queue: mq, Ledger: l}
	m := testenv.MinIO(t)
	store, err := objstore.NewS3(objstore.S3Config{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey,
		Bucket: m.Bucket, PartSize: objstore.MinPartSize})
	if err != nil {
		t.Fatal(err)
	}
	client, err := qualys.New(qualys.Config{BaseURL: srv.URL, Username: sim.Username(), Password: sim.Password()})
	if err != nil {
		t.Fatal(err)
	}
	w.parts = app.Parts{Log: slog.New(slog.DiscardHandler), Qualys: client, Store: store, Queue: w.q, Prefix: "qualys",
		Owner: "w1", Finish: noFinisher{}}

	before := sim.Clock().Now().Truncate(time.Second)
	var after time.Time
	if _, err := w.q.CreateRun(ctx, ledger.RunRecord{ID: run, After: after, Before: before, State: ledger.RunFetching}); err != nil {
		t.Fatal(err)
	}
	ids := slices.Collect(sim.HostListTruth(after, before))
	pub := w.q.Publisher(msg.PublisherOptions{})
	for n := 0; len(ids) > 0; n++ {
		k := min(batchSize, len(ids))
		b := msg.Batch{Run: run, Number: n + 1, After: after, Before: before, IDs: hostids.Of(ids[:k]).String(), Hosts: k}
		if err := pub.Publish(ctx, b); err != nil {
			t.Fatal(err)
		}
		w.batches = append(w.batches, b)
		ids = ids[k:]
	}
	if err := pub.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

type noFinisher struct{}

func (noFinisher) TryFinish(context.Context, string) error { return nil }

// awaitCall waits for a detection call to reach the simulator.
func (w *clusterWorld) awaitCall(t *testing.T) {
	t.Helper()
	select {
	case <-w.entered:
	case <-time.After(time.Minute):
		t.Fatal("no detection call within a minute")
	}
}

func (w *clusterWorld) releaseCalls() {
	w.holding.Store(false)
	w.relOnce.Do(func() { close(w.release) })
}

// worker starts a one-slot worker with its metrics; stop waits for it.
func (w *clusterWorld) worker(reg *prometheus.Registry) (*fetch.Worker, func()) {
	wk := w.parts.Worker(fetch.Config{Slots: 1, PullWait: 300 * time.Millisecond, ProbeEvery: 200 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, JetStreamCheckEvery: 300 * time.Millisecond}, fetch.NewMetrics(reg))
	ctx, cancel := context.WithCancel(w.t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := wk.Run(ctx, ctx); err != nil {
			w.t.Errorf("worker: %v", err)
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	w.t.Cleanup(stop)
	return wk, stop
}

// settled checks the run's end: every batch done, none charged a failure,
// no dead letter, nothing left in the stream.
func (w *clusterWorld) settled(timeout time.Duration) {
	w.t.Helper()
	testenv.EventuallyOK(w.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(w.t.Context(), 5*time.Second)
		defer cancel()
		n, err := w.q.CountDone(ctx, run)
		if err != nil {
			return err
		}
		if n != len(w.batches) {
			return fmt.Errorf("%d of %d batches done", n, len(w.batches))
		}
		pending, err := w.q.Pending(ctx, run)
		if err == nil && pending > 0 {
			err = fmt.Errorf("%d batch messages still queued", pending)
		}
		return err
	}, "the run's batches done and acked")
	ctx := w.t.Context()
	for _, b := range w.batches {
		n, err := w.q.FailureCount(ctx, run, b.Key())
		if err != nil {
			w.t.Fatal(err)
		}
		if n != 0 {
			w.t.Errorf("batch %s charged %d failures", b.Key(), n)
		}
	}
	if dl, err := w.q.DeadLetters(ctx, run); err != nil || len(dl) != 0 {
		w.t.Fatalf("dead letters: %v, %v", dl, err)
	}
}

// TestQuorumLossPausesWorker: two nodes of three go while a batch is in
// flight. The worker stops pulling and reports not ready (state nats, the
// gauge at 1); the batch's lease cannot be renewed, so its call is given
// up, uncharged. The nodes come back: the worker is ready again without a
// restart, and the run completes with no failure charged and no dead
// letter.
func TestQuorumLossPausesWorker(t *testing.T) {
	w := newClusterWorld(t, 200, 50, 4*time.Second)
	w.holding.Store(true)
	reg := prometheus.NewRegistry()
	wk, stop := w.worker(reg)
	w.awaitCall(t)
	if err := wk.Ready(); err != nil {
		t.Fatalf("not ready before the quorum loss: %v", err)
	}
	w.c.Shutdown(1)
	w.c.Shutdown(2)
	testenv.EventuallyOK(t, time.Minute, func() error {
		err := wk.Ready()
		if !errors.Is(err, msg.ErrJetStreamUnavailable) || app.StateOf(err) != app.StateNATS {
			return fmt.Errorf("Ready = %v (state %s)", err, app.StateOf(err))
		}
		if g := gauge(t, reg, "qfetch_worker_jetstream_unavailable"); g != 1 {
			return fmt.Errorf("qfetch_worker_jetstream_unavailable = %v", g)
		}
		if n := counter(t, reg, "qfetch_worker_leases_lost_total", nil); n < 1 {
			return errors.New("the held batch's lease not given up")
		}
		return nil
	}, "the worker paused by the quorum loss, its batch given up")
	w.releaseCalls()

	w.c.Start(1)
	w.c.Start(2)
	testenv.EventuallyOK(t, time.Minute, func() error {
		if g := gauge(t, reg, "qfetch_worker_jetstream_unavailable"); g != 0 {
			return fmt.Errorf("qfetch_worker_jetstream_unavailable = %v", g)
		}
		return wk.Ready()
	}, "the worker ready again once the quorum is back")
	w.settled(2 * time.Minute)
	stop()
	if n := counter(t, reg, "qfetch_worker_batches_total", map[string]string{"outcome": "dead-lettered"}); n != 0 {
		t.Fatalf("%v batches dead-lettered", n)
	}
}

// TestConnectedNodeLost: the node the worker is connected to goes while a
// batch is in flight; the worker goes on through a surviving node without
// a restart, and the run completes with nothing charged.
func TestConnectedNodeLost(t *testing.T) {
	w := newClusterWorld(t, 200, 50, 4*time.Second)
	w.holding.Store(true)
	reg := prometheus.NewRegistry()
	wk, _ := w.worker(reg)
	w.awaitCall(t)
	if got := w.nc.ConnectedServerName(); got != "n1" {
		t.Fatalf("connected to %q, want n1", got)
	}
	w.c.Shutdown(0)
	w.releaseCalls()
	w.settled(2 * time.Minute)
	if got := w.nc.ConnectedServerName(); got == "n1" || got == "" {
		t.Fatalf("connected to %q after n1 went", got)
	}
	testenv.EventuallyOK(t, 30*time.Second, wk.Ready, "the worker ready")
}
