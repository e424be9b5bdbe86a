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

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// lateListener is an address that refuses connections until open, from
// when on it forwards them to a target: a dependency that is unreachable
// at start and comes up later, on the same address.
type lateListener struct {
	t    *testing.T
	addr string
}

func newLateListener(t *testing.T) *lateListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return &lateListener{t: t, addr: addr}
}

// open listens on the address and forwards every connection to target
// until the test ends.
func (l *lateListener) open(target string) {
	l.t.Helper()
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		l.t.Fatalf("listening on %s again: %v", l.addr, err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	l.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			wg.Go(func() { _, _ = io.Copy(c, s); c.Close() })
		}
	})
}

// worker is cmd/worker's run in this process.
type worker struct {
	t      *testing.T
	listen string
}

// startWorker runs the worker with the environment vars (QFETCH_*) until
// the test ends; it must then stop as interrupted.
func startWorker(t *testing.T, vars map[string]string) *worker {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	vars["QFETCH_WORKER_LISTEN"] = listen
	for k, v := range vars {
		t.Setenv(k, v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !strings.Contains(err.Error(), "interrupted") {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the worker did not stop within 30s of its signal")
		}
	})
	return &worker{t: t, listen: listen}
}

// readyz is /readyz's status and body; 0 while nothing answers.
func (w *worker) readyz() (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + w.listen + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// TestWorkerNotReadyUntilItCanWork: with S3 unreachable, the bucket
// missing, a wrong Qualys login or NATS unreachable, the worker answers
// /readyz with the state word and pulls no batch; once the fault is fixed
// it becomes ready and works the queue, without a restart (#18.2).
func TestWorkerNotReadyUntilItCanWork(t *testing.T) {
	tests := []struct {
		name  string
		state string
		// breakIt changes the worker's environment or the world before the
		// worker starts; it returns the fix.
		breakIt func(t *testing.T, e *testrun.Env, vars map[string]string) (fix func())
	}{
		{"S3 unreachable", "store", func(t *testing.T, e *testrun.Env, vars map[string]string) func() {
			l := newLateListener(t)
			vars["QFETCH_S3_ENDPOINT"] = l.addr
			return func() { l.open(e.MinIO.Endpoint) }
		}},
		{"bucket missing", "store", func(t *testing.T, e *testrun.Env, vars map[string]string) func() {
			bucket := e.MinIO.Bucket + "-late"
			vars["QFETCH_S3_BUCKET"] = bucket
			return func() {
				if err := e.MinIO.Client.MakeBucket(t.Context(), bucket, minio.MakeBucketOptions{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() {
					ctx := context.Background()
					for o := range e.MinIO.Client.ListObjects(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
						_ = e.MinIO.Client.RemoveObject(ctx, bucket, o.Key, minio.RemoveObjectOptions{})
					}
					_ = e.MinIO.Client.RemoveBucket(ctx, bucket)
				})
			}
		}},
		{"wrong Qualys login", "qualys", func(t *testing.T, e *testrun.Env, _ map[string]string) func() {
			// The simulator refuses every login, the right password too,
			// until told otherwise: a password fixed on Qualys' side.
			e.Sim.SetRejectLogins(true)
			return func() { e.Sim.SetRejectLogins(false) }
		}},
		{"NATS unreachable", "nats", func(t *testing.T, e *testrun.Env, vars map[string]string) func() {
			l := newLateListener(t)
			vars["QFETCH_NATS_URL"] = "nats://" + l.addr
			target := strings.TrimPrefix(e.NATSURL, "nats://")
			return func() { l.open(target) }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testrun.New(t, testrun.Options{Hosts: 300, BatchSize: 100})
			out := e.Plan()
			planned := e.Record(out.Run).BatchesPlanned
			if planned == 0 {
				t.Fatal("nothing planned")
			}
			vars := map[string]string{
				"QFETCH_QUALYS_URL":          e.SimURL,
				"QFETCH_QUALYS_USERNAME":     e.Sim.Username(),
				"QFETCH_QUALYS_PASSWORD":     e.Sim.Password(),
				"QFETCH_NATS_URL":            e.NATSURL,
				"QFETCH_S3_ENDPOINT":         e.MinIO.Endpoint,
				"QFETCH_S3_SECURE":           "false",
				"QFETCH_S3_ACCESS_KEY":       e.MinIO.AccessKey,
				"QFETCH_S3_SECRET_KEY":       e.MinIO.SecretKey,
				"QFETCH_S3_BUCKET":           e.MinIO.Bucket,
				"QFETCH_S3_PREFIX":           testrun.Prefix,
				"QFETCH_WORKER_PROBE_EVERY":  "1s",
				"QFETCH_WORKER_SLOTS":        "2",
				"QFETCH_WORKER_STATUS_EVERY": "1s",
				"QFETCH_WORKER_GRACE":        "2s",
				"QFETCH_LOG_LEVEL":           "debug",
			}
			fix := tt.breakIt(t, e, vars)
			w := startWorker(t, vars)

			want := "not ready: " + tt.state
			testenv.Eventually(t, time.Minute, func() bool {
				code, body := w.readyz()
				return code == http.StatusServiceUnavailable && body == want
			}, "/readyz %q", want)
			// Not ready, and it stays so while the fault lasts: more tries,
			// never a batch.
			for range 3 {
				if code, body := w.readyz(); code != http.StatusServiceUnavailable || body != want {
					t.Fatalf("/readyz: %d %q while the fault lasts, want 503 %q", code, body, want)
				}
				delivered(t, e, 0)
			}

			fix()
			testenv.Eventually(t, time.Minute, func() bool {
				code, body := w.readyz()
				return code == http.StatusOK && body == "ready"
			}, "ready once fixed")
			testenv.Eventually(t, 2*time.Minute, func() bool {
				n, err := e.Q.Pending(t.Context(), out.Run)
				return err == nil && n == 0
			}, "the worker worked the queue")
			if got := e.Sim.Stats().Endpoints["detection"].Requests; got < int64(planned) {
				t.Errorf("%d detection calls for %d batches", got, planned)
			}
		})
	}
}

// delivered checks that the consumer has delivered n batches.
func delivered(t *testing.T, e *testrun.Env, n uint64) {
	t.Helper()
	c, err := e.JS.Consumer(t.Context(), msg.StreamBatches, msg.ConsumerWorkers)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != n {
		t.Fatalf("the consumer delivered %d batches, want %d", info.Delivered.Consumer, n)
	}
}
