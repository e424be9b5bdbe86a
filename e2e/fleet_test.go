package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/serverproc"
	"github.com/qfetch/qfetch/internal/testenv"
)

const prefix = "qualys"

// natsProc is a nats-server process with JetStream; it keeps its port and
// store directory across restarts.
type natsProc struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	p    *proc
	n    int // starts, for log names
}

func startNATS(t testing.TB) *natsProc {
	t.Helper()
	n := &natsProc{t: t, bin: testenv.NATSBinary(t), port: freePort(t), dir: filepath.Join(t.TempDir(), "js")}
	n.Start()
	return n
}

// URL is the client URL; it does not change across restarts.
func (n *natsProc) URL() string { return "nats://" + hostPort(n.port) }

// Start starts the server and waits until JetStream answers.
func (n *natsProc) Start() {
	n.t.Helper()
	n.n++
	n.p = startProc(n.t, "nats-"+strconv.Itoa(n.n), n.bin,
		[]string{"-js", "-sd", n.dir, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-n", "qfetch-e2e"}, nil)
	testenv.EventuallyOK(n.t, 30*time.Second, func() error {
		if n.p.Exited() {
			n.t.Fatalf("nats-server exited at start:\n%s", n.p.Log())
		}
		nc, err := nats.Connect(n.URL(), nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	}, "nats-server with JetStream on %s", n.URL())
}

// Stop stops the server gracefully and waits for it.
func (n *natsProc) Stop() {
	n.t.Helper()
	if err := n.p.Stop(); err != nil {
		n.t.Fatal(err)
	}
}

// s3Target is the bucket a scenario writes to.
type s3Target struct {
	Endpoint, AccessKey, SecretKey, Bucket string
	Client                                 *minio.Client
}

func sharedBucket(t testing.TB) s3Target {
	m := testenv.MinIO(t)
	return s3Target{Endpoint: m.Endpoint, AccessKey: m.AccessKey, SecretKey: m.SecretKey, Bucket: m.Bucket, Client: m.Client}
}

// world is one scenario's system: a simulator, NATS, a bucket, and the
// settings every planner and worker of it share.
type world struct {
	t    *testing.T
	bins bins
	sim  *simProc
	nats *natsProc // nil in a clustered world
	// cluster is the three-node JetStream cluster of a world made by
	// newClusterWorld; nil otherwise. Its streams and buckets are R3.
	cluster *serverproc.NATSCluster
	s3      s3Target

	// Fleet settings (QFETCH_*).
	BatchSize   int
	MaxInFlight int
	PageSize    int
	Extra       map[string]string // more variables for every process
	// KB is QFETCH_KB_ENABLED for every process: off unless a scenario
	// turns it on. The fault scenarios count batches, calls, dead letters
	// and objects of their detection runs; a KnowledgeBase pass beside
	// them (the planner's default) would add its own batches to the queue
	// and its calls to the fleet cap, and make their figures depend on
	// when it ran. 15_knowledgebase runs it (qfetch local, the package
	// tests and tablecheck run it beside runs).
	KB bool

	nc      *nats.Conn
	js      jetstream.JetStream
	q       app.JetStream
	store   *objstore.S3
	workers int
}

func newWorld(t *testing.T, b bins, sim *simProc, s3 s3Target) *world {
	t.Helper()
	w := &world{t: t, bins: b, sim: sim, nats: startNATS(t), s3: s3}
	w.connect()
	return w
}

// newClusterWorld is newWorld on a three-node JetStream cluster: every
// process is given all three URLs and QFETCH_NATS_STREAM_REPLICAS=3.
func newClusterWorld(t *testing.T, b bins, sim *simProc, s3 s3Target) *world {
	t.Helper()
	w := &world{t: t, bins: b, sim: sim, cluster: startCluster(t), s3: s3}
	w.connect()
	return w
}

// natsURL is what QFETCH_NATS_URL names: the server, or every node.
func (w *world) natsURL() string {
	if w.cluster != nil {
		return w.cluster.URLs()
	}
	return w.nats.URL()
}

// replicas is the JetStream replica count of the world's streams and buckets.
func (w *world) replicas() int {
	if w.cluster != nil {
		return 3
	}
	return 1
}

func (w *world) connect() {
	t, s3 := w.t, w.s3
	t.Helper()
	w.BatchSize, w.MaxInFlight, w.PageSize = 1000, 2, 5000
	nc, err := nats.Connect(w.natsURL(), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w.nc = nc
	if w.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	store, err := objstore.NewS3(objstore.S3Config{Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, Bucket: s3.Bucket})
	if err != nil {
		t.Fatal(err)
	}
	w.store = store
}

// env is the configuration of a planner or worker of this world.
func (w *world) env(password string) []string {
	if password == "" {
		password = w.sim.Password
	}
	e := []string{
		"QFETCH_QUALYS_URL=" + w.sim.URL,
		"QFETCH_QUALYS_USERNAME=" + w.sim.User,
		"QFETCH_QUALYS_PASSWORD=" + password,
		"QFETCH_QUALYS_IDLE_TIMEOUT=2s",
		"QFETCH_QUALYS_CONNECT_TIMEOUT=5s",
		"QFETCH_QUALYS_HEADER_TIMEOUT=30s",
		"QFETCH_QUALYS_HOSTLIST_PAGE_SIZE=" + strconv.Itoa(w.PageSize),
		"QFETCH_NATS_URL=" + w.natsURL(),
		"QFETCH_S3_ENDPOINT=" + w.s3.Endpoint,
		"QFETCH_S3_SECURE=false",
		"QFETCH_S3_ACCESS_KEY=" + w.s3.AccessKey,
		"QFETCH_S3_SECRET_KEY=" + w.s3.SecretKey,
		"QFETCH_S3_BUCKET=" + w.s3.Bucket,
		"QFETCH_S3_PREFIX=" + prefix,
		"QFETCH_BATCH_SIZE=" + strconv.Itoa(w.BatchSize),
		"QFETCH_MAX_IN_FLIGHT=" + strconv.Itoa(w.MaxInFlight),
		"QFETCH_PLAN_LOCK_TTL=5s",
		"QFETCH_KB_ENABLED=" + strconv.FormatBool(w.KB),
		"QFETCH_LOG_FORMAT=json",
		"GORACE=halt_on_error=0",
	}
	if w.cluster != nil {
		e = append(e, "QFETCH_NATS_STREAM_REPLICAS="+strconv.Itoa(w.replicas()))
	}
	for k, v := range w.Extra {
		e = append(e, k+"="+v)
	}
	return e
}

// Queue is the test's own view of the JetStream objects. It adopts the
// consumer as it is (like a planner), so it never changes the fleet cap.
func (w *world) Queue() app.JetStream {
	w.t.Helper()
	if w.q.Queue == nil {
		q, err := app.Queue(w.t.Context(), w.js, config.NATS{StreamReplicas: w.replicas()}, config.Fleet{MaxInFlight: w.MaxInFlight}, 0, app.RolePlanner)
		if err != nil {
			w.t.Fatalf("test's JetStream view: %v", err)
		}
		w.q = q
	}
	return w.q
}

// planner starts one planner pass.
func (w *world) planner(password string, extra ...string) *proc {
	w.t.Helper()
	return startProc(w.t, "planner", w.bins.Planner, nil, append(w.env(password), extra...))
}

// plan runs one planner pass to its end and returns the run it opened, or
// the one it resumed. A pass that lost its lock on a loaded machine (the
// lock's TTL is 5 s here) stops, exit 0, before its run is planned whole:
// as its CronJob would, plan runs another, which resumes the run.
func (w *world) plan() string {
	w.t.Helper()
	id := w.planOnce()
	for range 2 {
		if r := w.Run(id); r.PlanningComplete || r.State != ledger.RunPlanning {
			break
		}
		w.t.Logf("run %s is not planned whole after the pass (its lock lost under load?): another pass", id)
		if again := w.planOnce(); again != id {
			w.t.Fatalf("the next planner pass planned run %s; want run %s resumed", again, id)
		}
	}
	return id
}

// planOnce is one pass of plan. (Run IDs sort by time only to the second,
// so "the newest ID" is not enough.)
func (w *world) planOnce() string {
	w.t.Helper()
	before := w.runIDs()
	w.planner("").Wait(2*time.Minute, 0)
	after := w.runIDs()
	var opened []string
	for _, id := range after {
		if !slices.Contains(before, id) {
			opened = append(opened, id)
		}
	}
	switch len(opened) {
	case 1:
		return opened[0]
	case 0:
		// Resumed: the record the planner updated last.
		var last ledger.RunRecord
		for _, id := range after {
			if r := w.Run(id); r.Updated.After(last.Updated) {
				last = r
			}
		}
		return last.ID
	}
	w.t.Fatalf("one planner pass opened runs %v", opened)
	return ""
}

// runIDs lists the run records, oldest first.
func (w *world) runIDs() []string {
	w.t.Helper()
	ids, err := w.Queue().RunIDs(w.t.Context())
	if err != nil {
		w.t.Fatalf("run IDs: %v", err)
	}
	return ids
}

// workerProc is a worker process and its health address.
type workerProc struct {
	*proc
	Name   string
	listen string
}

// worker starts a worker process named name (its POD_NAME, so the manifest
// says which worker stored what) with slots fetch slots.
func (w *world) worker(name string, slots int, password string) *workerProc {
	w.t.Helper()
	return w.workerWith(name, slots, password)
}

// workerWith is worker with more variables (KEY=value) for this worker
// alone. The worker defaults below give way to w.Extra, and both to extra
// (the last of a duplicated variable wins).
func (w *world) workerWith(name string, slots int, password string, extra ...string) *workerProc {
	w.t.Helper()
	w.workers++
	listen := hostPort(freePort(w.t))
	env := append(w.env(password),
		"POD_NAME="+name,
		"QFETCH_WORKER_SLOTS="+strconv.Itoa(slots),
		"QFETCH_WORKER_LISTEN="+listen,
		"QFETCH_WORKER_PROBE_EVERY=1s",
		"QFETCH_WORKER_ACK_WAIT=30s",
		"QFETCH_WORKER_STATUS_EVERY=1s",
		"QFETCH_WORKER_GRACE=3s",
	)
	for k, v := range w.Extra {
		env = append(env, k+"="+v)
	}
	env = append(env, extra...)
	p := startProc(w.t, name, w.bins.Worker, nil, env)
	wp := &workerProc{proc: p, Name: name, listen: listen}
	testenv.Eventually(w.t, 30*time.Second, func() bool {
		if p.Exited() {
			w.t.Fatalf("worker %s exited at start:\n%s", name, p.Log())
		}
		_, err := wp.Ready()
		return err == nil
	}, "worker %s serving its health endpoints", name)
	return wp
}

// Ready asks /readyz: true when ready, false when it answers 503.
func (wp *workerProc) Ready() (bool, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + wp.listen + "/readyz")
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusServiceUnavailable:
		return false, nil
	}
	return false, fmt.Errorf("readyz: %s", resp.Status)
}

// Metric returns the value of one series of the worker's /metrics, named
// as the exposition format writes it (`name{label="value"}`); ok is false
// when the worker does not answer or has no such series.
func (wp *workerProc) Metric(series string) (v float64, ok bool) {
	v, ok = wp.Metrics()[series]
	return v, ok
}

// Metrics returns every series of the worker's /metrics by its name as
// the exposition format writes it; nil when the worker does not answer.
func (wp *workerProc) Metrics() map[string]float64 {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + wp.listen + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, found := strings.Cut(sc.Text(), " ")
		if !found || strings.HasPrefix(name, "#") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// Run reads a run record.
func (w *world) Run(id string) ledger.RunRecord {
	w.t.Helper()
	r, err := w.Queue().GetRun(w.t.Context(), id)
	if err != nil {
		w.t.Fatalf("run %s: %v", id, err)
	}
	return r
}

// waitComplete waits until run id is complete.
func (w *world) waitComplete(id string, timeout time.Duration) ledger.RunRecord {
	w.t.Helper()
	var rec ledger.RunRecord
	testenv.Eventually(w.t, timeout, func() bool {
		r, err := w.Queue().GetRun(w.t.Context(), id)
		if err != nil {
			return false // NATS may be restarting
		}
		rec = r
		return r.State == ledger.RunComplete
	}, "run %s complete", id)
	return rec
}

// doneCount is how many batch results run id has (0 while NATS is away).
func (w *world) doneCount(id string) int {
	n, err := w.Queue().CountDone(w.t.Context(), id)
	if err != nil {
		return 0
	}
	return n
}

// streamMsgs is the number of messages in a stream.
func (w *world) streamMsgs(name string) uint64 {
	w.t.Helper()
	s, err := w.js.Stream(w.t.Context(), name)
	if err != nil {
		w.t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(w.t.Context())
	if err != nil {
		w.t.Fatalf("stream %s: %v", name, err)
	}
	return info.State.Msgs
}

// deadLetters returns the dead letters of every run.
func (w *world) deadLetters() []msg.DeadLetter {
	w.t.Helper()
	var dl []msg.DeadLetter
	// A read fails while a cluster's stream has no leader yet (no
	// responders): read again until one answers.
	testenv.EventuallyOK(w.t, time.Minute, func() error {
		var err error
		dl, err = w.Queue().DeadLetters(w.t.Context(), "")
		return err
	}, "reading the dead letters")
	return dl
}

// plannerLockFree reports whether no planner holds the lock.
func (w *world) plannerLockFree() bool {
	kv, err := w.js.KeyValue(w.t.Context(), ledger.BucketLocks)
	if err != nil {
		return false
	}
	_, err = kv.Get(w.t.Context(), "planner")
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// checkPeak fails the test if the simulator ever ran more detection calls
// at once than the fleet cap (I5). Meaningful only when the simulator's own
// concurrency limit does not cut in first, and when calls last: the
// simulator counts a call as running until it has written the body, which
// for a small body is milliseconds however long the client takes to read it
// (so the scenarios that check it slow every answer's start or pace bodies).
func (w *world) checkPeak() {
	w.t.Helper()
	if peak := w.sim.Detection().PeakRunning; peak > w.MaxInFlight {
		w.t.Errorf("the simulator ran %d detection calls at once; QFETCH_MAX_IN_FLIGHT is %d (I5)", peak, w.MaxInFlight)
	}
}

// waitFor polls cond every interval (for conditions that are costly to
// check) and fails the test after timeout.
func waitFor(t testing.TB, timeout, interval time.Duration, cond func() bool, what string) {
	t.Helper()
	if !pollUntil(timeout, interval, cond) {
		t.Fatalf("not true after %v: %s", timeout, what)
	}
}

// pollUntil polls cond every interval until it holds (true) or timeout has
// passed (false), for checks that report rather than stop the test.
func pollUntil(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}
