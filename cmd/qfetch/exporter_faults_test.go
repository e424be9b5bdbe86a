package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// exporterProc is `qfetch exporter` run as main would, its log captured.
type exporterProc struct {
	addr   string
	cancel context.CancelFunc
	done   chan int
	errs   *strings.Builder

	mu  sync.Mutex
	log strings.Builder
}

// startExporter sets env and starts the exporter. The process log goes to
// os.Stderr (app.Logger), swapped for a pipe until the test ends.
func startExporter(t *testing.T, env map[string]string) *exporterProc {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &exporterProc{addr: ln.Addr().String(), done: make(chan int, 1), errs: &strings.Builder{}}
	ln.Close()
	env["QFETCH_EXPORTER_LISTEN"] = p.addr
	for k, v := range env {
		t.Setenv(k, v)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = w
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	var out strings.Builder
	go func() { p.done <- dispatch(ctx, []string{"exporter"}, &out, p.errs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Error("exporter did not stop")
		}
		os.Stderr = stderr
		w.Close()
		wg.Wait()
		r.Close()
	})
	return p
}

func (p *exporterProc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// metric returns the value of an unlabelled series, or false.
func (p *exporterProc) metric(name string) (float64, bool) {
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestExporterBucketMissing: the exporter's bucket does not exist and
// a run is open, so every refresh fails to write its status.json. The log
// must say so clearly (I6) and carry no secret (I7); and the failure must
// be visible to the alerts: qfetch_status_refresh_timestamp_seconds (what
// QfetchStatusRefreshFailing reads; no rule reads the errors counter) must
// not keep advancing as though the refreshes succeeded.
func TestExporterBucketMissing(t *testing.T) {
	e := testrun.New(t, testrun.Options{})
	e.Plan() // an open run: its status.json is due at every refresh
	p := startExporter(t, map[string]string{
		"QFETCH_NATS_URL": e.NATSURL, "QFETCH_S3_ENDPOINT": e.MinIO.Endpoint, "QFETCH_S3_SECURE": "false",
		"QFETCH_S3_ACCESS_KEY": e.MinIO.AccessKey, "QFETCH_S3_SECRET_KEY": e.MinIO.SecretKey,
		"QFETCH_S3_BUCKET": "no-such-bucket", "QFETCH_EXPORTER_EVERY": "1s", "QFETCH_LOG_FORMAT": "json",
	})
	testenv.Eventually(t, 30*time.Second, func() bool {
		n, _ := p.metric("qfetch_status_refresh_errors_total")
		return n >= 3
	}, "three failed refreshes")
	logs := p.logs()
	if !strings.Contains(logs, "bucket does not exist") {
		t.Errorf("the log does not name the missing bucket:\n%s", logs)
	}
	if strings.Contains(logs, e.MinIO.SecretKey) {
		t.Errorf("the log holds the S3 secret key")
	}
	ts, _ := p.metric("qfetch_status_refresh_timestamp_seconds")
	if age := time.Since(time.Unix(0, int64(ts*1e9))); age < 2*time.Second {
		t.Errorf("every refresh failed (3 of 3), yet qfetch_status_refresh_timestamp_seconds is %s old: "+
			"QfetchStatusRefreshFailing cannot fire and no alert reads qfetch_status_refresh_errors_total", age.Round(time.Millisecond))
	}
}

// TestExporterNATSOutage: NATS away at the start is exit 3 with the
// cause; NATS away mid-way is not an exit: /readyz says so, and the
// exporter picks up again when NATS is back. At SIGTERM it exits 0 and
// gives up the status writer's lock at once.
func TestExporterNATSOutage(t *testing.T) {
	m := testenv.MinIO(t)
	ns := testenv.StartNATS(t)
	env := func() map[string]string {
		return map[string]string{
			"QFETCH_NATS_URL": ns.URL(), "QFETCH_S3_ENDPOINT": m.Endpoint, "QFETCH_S3_SECURE": "false",
			"QFETCH_S3_ACCESS_KEY": m.AccessKey, "QFETCH_S3_SECRET_KEY": m.SecretKey, "QFETCH_S3_BUCKET": m.Bucket,
			"QFETCH_EXPORTER_EVERY": "1s", "QFETCH_LOG_FORMAT": "json",
		}
	}
	t.Run("down at start", func(t *testing.T) {
		ns.Stop()
		defer ns.Start()
		p := startExporter(t, env())
		select {
		case code := <-p.done:
			p.done <- code // for the cleanup
			if code != 3 || !strings.Contains(p.errs.String(), "connecting to NATS") {
				t.Fatalf("exit %d, %q", code, p.errs.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the exporter neither exits nor serves without NATS")
		}
	})
	t.Run("down mid-way, then SIGTERM", func(t *testing.T) {
		p := startExporter(t, env())
		readyz := func() (int, string) {
			resp, err := http.Get("http://" + p.addr + "/readyz")
			if err != nil {
				return 0, ""
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, strings.TrimSpace(string(body))
		}
		ready := func() int { code, _ := readyz(); return code }
		// A new installation: it creates no stream or bucket (#17) and
		// waits, not ready and without exiting, for the planner's; its
		// readiness names NATS once the start checks have run.
		testenv.Eventually(t, 20*time.Second, func() bool {
			code, state := readyz()
			return code == 503 && state == "not ready: nats"
		}, "not ready (nats) before any planner")
		select {
		case code := <-p.done:
			p.done <- code
			t.Fatalf("exit %d before any planner: %s", code, p.errs.String())
		default:
		}
		js := testrun.Connect(t, ns.URL())
		if _, err := ledger.Setup(t.Context(), js, ledger.Config{}); err != nil {
			t.Fatal(err)
		}
		if _, err := msg.Setup(t.Context(), js, msg.Config{AdoptConsumer: true}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 40*time.Second, func() bool { return ready() == 200 }, "ready")
		ns.Stop()
		testenv.Eventually(t, 20*time.Second, func() bool { return ready() == 503 }, "not ready while NATS is away")
		ns.Start()
		testenv.Eventually(t, 30*time.Second, func() bool { return ready() == 200 }, "ready again")
		before, _ := p.metric("qfetch_status_refresh_timestamp_seconds")
		testenv.Eventually(t, 30*time.Second, func() bool {
			now, _ := p.metric("qfetch_status_refresh_timestamp_seconds")
			return now > before
		}, "refreshing again")
		p.cancel()
		select {
		case code := <-p.done:
			p.done <- code
			if code != 0 {
				t.Fatalf("exit %d after SIGTERM: %s", code, p.errs.String())
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
		kv, err := js.KeyValue(t.Context(), "QFETCH_STATUS_LOCK")
		if err != nil {
			t.Fatal(err)
		}
		if e, err := kv.Get(t.Context(), "status-writer"); err == nil {
			t.Errorf("the status writer's lock is still held after exit: %s", e.Value())
		}
	})
}
