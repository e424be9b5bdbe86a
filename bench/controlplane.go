package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
)

// Server kinds the control-plane scenarios run on.
const (
	serverSingle  = "single"
	serverCluster = "cluster R3"
)

// shape is W worker processes of S slots.
type shape struct{ W, S int }

func (s shape) String() string { return fmt.Sprintf("%d×%d", s.W, s.S) }

// cpWorld is one planned run's world: NATS (one server or a three-node
// cluster at R3), the simulator as a process of its own (`qfetch sim`,
// so that its CPU is its own), the tap, and W workers. Every run gets a
// fresh world: the KV buckets and the stream start empty.
type cpWorld struct {
	h        *harness
	kind     string
	dir      string
	single   *natsServer
	cluster  *serverproc.NATSCluster
	urls     string
	replicas int

	sim                      *proc
	simURL, simUser, simPass string

	nc      *nats.Conn
	js      jetstream.JetStream
	q       app.JetStream
	tap     *tap
	workers []*proc
}

// errNoCluster says the cluster support is not there (the contract stub).
var errNoCluster = errors.New("three-node cluster unavailable")

// startWorld starts the servers of kind, the simulator over hosts tiny
// hosts (no or one detection, a one-byte RESULTS, no think-time, no
// limits), the harness's view of the queue and the tap.
func (h *harness) startWorld(ctx context.Context, kind, name string, hosts int64) (w *cpWorld, err error) {
	w = &cpWorld{h: h, kind: kind, dir: filepath.Join(h.tmp, name), replicas: 1}
	defer func() {
		if err != nil {
			w.stop()
			w = nil
		}
	}()
	switch kind {
	case serverSingle:
		if w.single, err = startNATS(ctx, h.natsBin, filepath.Join(w.dir, "nats")); err != nil {
			return w, err
		}
		w.urls = w.single.URL
	case serverCluster:
		var echo *prefixed
		opts := serverproc.ClusterOptions{}
		if verbose {
			echo = &prefixed{name: "nats"}
			opts.Echo = echo
		}
		if w.cluster, err = serverproc.StartNATSCluster(h.natsBin, filepath.Join(w.dir, "nats"), opts); err != nil {
			return w, fmt.Errorf("%w: %w", errNoCluster, err)
		}
		w.urls, w.replicas = w.cluster.URLs(), 3
		// A meta leader is not yet every peer: stream placement at R3
		// needs all three current ("no suitable peers" otherwise).
		if err := w.cluster.WaitHealthy(readyTimeout); err != nil {
			return w, err
		}
	}
	if err := w.startSim(ctx, hosts); err != nil {
		return w, err
	}
	if w.nc, err = nats.Connect(w.urls, nats.Name("qfetch-bench"), nats.MaxReconnects(-1)); err != nil {
		return w, err
	}
	if w.js, err = jetstream.New(w.nc); err != nil {
		return w, err
	}
	// The harness sets the queue up as the planner would, at the replicas
	// the workers use; the workers' QFETCH_MAX_IN_FLIGHT owns the consumer.
	// A loaded machine can still report a peer offline for a moment.
	var qerr error
	err = poll(ctx, readyTimeout, 500*time.Millisecond, func() (bool, error) {
		w.q, qerr = app.Queue(ctx, w.js, config.NATS{StreamReplicas: w.replicas}, config.Fleet{MaxInFlight: 1}, 0, app.RolePlanner)
		return qerr == nil, nil
	})
	if err != nil {
		return w, fmt.Errorf("setting the queue up: %w (last: %w)", err, qerr)
	}
	if w.tap, err = startTap(w.urls); err != nil {
		return w, err
	}
	return w, nil
}

// startSim runs `qfetch sim` on a free port with tiny answers and no
// limits, on a clock frozen a minute in the past (every host is processed
// before the planner's window ends).
func (w *cpWorld) startSim(ctx context.Context, hosts int64) error {
	w.simPass = rand.Text()
	start := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	args := []string{"sim", "--addr", "127.0.0.1:0", "--hosts", strconv.FormatInt(hosts, 10), "--seed", "1",
		"--concurrency-limit", "0", "--rate-limit", "0", "--mean-detections", "1", "--max-detections", "1",
		"--results-size", "1", "--frozen-clock", "--start", start.Format(time.RFC3339), "--password", w.simPass}
	var err error
	if w.sim, err = startProc("sim", w.h.qfetch, args, childEnv(), []string{w.simPass}); err != nil {
		return err
	}
	return poll(ctx, readyTimeout, 20*time.Millisecond, func() (bool, error) {
		if w.sim.exited() {
			return false, fmt.Errorf("qfetch sim exited:\n%s", w.sim.out)
		}
		sc := bufio.NewScanner(strings.NewReader(w.sim.out.String()))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "QFETCH_QUALYS_URL="); ok {
				w.simURL = v
			}
			if v, ok := strings.CutPrefix(sc.Text(), "QFETCH_QUALYS_USERNAME="); ok {
				w.simUser = v
			}
		}
		return w.simURL != "" && w.simUser != "", nil
	})
}

// env is a planner's or worker's configuration in this world.
func (w *cpWorld) env(name string, extra ...string) []string {
	h := w.h
	return childEnv(append([]string{
		"POD_NAME=" + name, // app.Owner: the run record names the finisher by it
		"QFETCH_QUALYS_URL=" + w.simURL,
		"QFETCH_QUALYS_USERNAME=" + w.simUser,
		"QFETCH_QUALYS_PASSWORD=" + w.simPass,
		"QFETCH_NATS_URL=" + w.urls,
		"QFETCH_NATS_STREAM_REPLICAS=" + strconv.Itoa(w.replicas),
		"QFETCH_S3_ENDPOINT=" + h.s3.Endpoint,
		"QFETCH_S3_SECURE=false",
		"QFETCH_S3_ACCESS_KEY=" + h.s3.AccessKey,
		"QFETCH_S3_SECRET_KEY=" + h.s3.SecretKey,
		"QFETCH_S3_BUCKET=" + h.s3.Bucket,
		"QFETCH_S3_REGION=us-east-1",
		"QFETCH_LOG_FORMAT=json",
	}, extra...)...)
}

func (w *cpWorld) secrets() []string { return []string{w.simPass, w.h.s3.SecretKey} }

// startWorkers starts sh.W cmd/worker processes of sh.S slots, no fleet
// cap beyond W×S, and waits until each one pulls.
// With the run wholly queued (drain) a pull is answered at once, so none
// waits: then it only checks that they live.
func (w *cpWorld) startWorkers(ctx context.Context, sh shape, drain bool) error {
	for i := range sh.W {
		name := fmt.Sprintf("worker-%d", i+1)
		// No table conversions: derived data (I9), costed in the tables'
		// own bench; here they would only add Parquet writes to MinIO.
		env := w.env(name, "QFETCH_WORKER_SLOTS="+strconv.Itoa(sh.S), "QFETCH_WORKER_LISTEN=127.0.0.1:0",
			"QFETCH_MAX_IN_FLIGHT="+strconv.Itoa(sh.W*sh.S), "QFETCH_TABLES_CONCURRENCY=0")
		var p *proc
		var err error
		if i == 0 && w.h.o.cpuProfile != "" {
			// The first worker is cmd/worker's wiring in this binary, under
			// a CPU profile (-cpuprofile).
			p, err = w.h.startChild(env, childJob{Mode: modeWorker, CPUProfile: w.h.o.cpuProfile}, w.secrets())
			if p != nil {
				p.name = name // its RSS is reported under its worker name
			}
		} else {
			p, err = startProc(name, w.h.worker, nil, env, w.secrets())
		}
		if err != nil {
			return err
		}
		w.workers = append(w.workers, p)
	}
	err := poll(ctx, readyTimeout, 20*time.Millisecond, func() (bool, error) {
		for _, p := range w.workers {
			if p.exited() {
				return false, fmt.Errorf("%s exited at start:\n%s", p.name, p.out)
			}
		}
		if drain {
			return true, nil
		}
		c, err := w.js.Consumer(ctx, msg.StreamBatches, msg.ConsumerWorkers)
		if err != nil {
			return false, nil
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting >= sh.W, nil
	})
	if err != nil {
		return fmt.Errorf("workers not pulling: %w", err)
	}
	return nil
}

// natsPIDs are the running servers' process ids.
func (w *cpWorld) natsPIDs() []int {
	if w.single != nil {
		return []int{w.single.pid()}
	}
	var out []int
	if w.cluster != nil {
		for i := range w.cluster.Nodes {
			if pid := w.cluster.PID(i); pid > 0 {
				out = append(out, pid)
			}
		}
	}
	return out
}

// storeBytes is the bytes on disk under the servers' JetStream stores.
func (w *cpWorld) storeBytes() (int64, error) {
	if w.cluster != nil {
		return w.cluster.StoreBytes()
	}
	return dirBytes(filepath.Join(w.dir, "nats"))
}

func dirBytes(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	return n, err
}

// stop stops everything the world started, workers first.
func (w *cpWorld) stop() {
	for _, p := range w.workers {
		if err := p.stop(); err != nil {
			progress("stopping %s: %v", p.name, err)
		}
	}
	w.workers = nil
	w.tap.close()
	if w.nc != nil {
		w.nc.Close()
	}
	if w.sim != nil {
		if err := w.sim.stop(); err != nil {
			progress("stopping the simulator: %v", err)
		}
	}
	if w.single != nil {
		if err := w.single.stop(); err != nil {
			progress("stopping NATS: %v", err)
		}
	}
	if w.cluster != nil {
		if err := w.cluster.Stop(); err != nil {
			progress("stopping the NATS cluster: %v", err)
		}
	}
	_ = os.RemoveAll(w.dir)
}

// cpuKinds are the process kinds "where the time goes" reports.
var cpuKinds = []string{"nats", "workers", "planner", "sim", "minio", "harness"}

// cpuNow is every process kind's CPU so far (the planner's comes from its
// rusage once it has exited).
func (w *cpWorld) cpuNow() map[string]time.Duration {
	out := map[string]time.Duration{}
	add := func(kind string, pid int) {
		if c, err := procCPU(pid); err == nil {
			out[kind] += c
		}
	}
	for _, pid := range w.natsPIDs() {
		add("nats", pid)
	}
	for _, p := range w.workers {
		add("workers", p.pid())
	}
	add("sim", w.sim.pid())
	add("minio", w.h.s3.pid())
	out["harness"] = selfCPU()
	return out
}

// runResult is one planned run through a world.
type runResult struct {
	Run        string             `json:"run"`
	Batches    int                `json:"batches"`
	Hosts      int                `json:"hosts"`
	Wall       float64            `json:"wall_seconds"`            // planner start to the run marked complete
	AckSpan    float64            `json:"ack_span_seconds"`        // first +ACK to last, as the tap saw them
	PlannerRun float64            `json:"planner_seconds"`         // the planner process's life
	Drain      float64            `json:"drain_seconds,omitempty"` // drain rows: workers started (run wholly queued) to complete
	CPU        map[string]float64 `json:"cpu_seconds"`             // by process kind
	Tap        tapCounts          `json:"tap"`
	Record     ledger.RunRecord   `json:"-"`
	PlannerRSS int64              `json:"planner_peak_rss_bytes"`
	WorkerRSS  map[string]int64   `json:"worker_peak_rss_bytes"` // VmHWM by worker
	NATSRSS    int64              `json:"nats_rss_bytes"`        // VmRSS of the servers, summed, at the end
	NATSHWM    int64              `json:"nats_peak_rss_bytes"`   // VmHWM, summed
	StoreBytes int64              `json:"nats_store_bytes"`
	// StreamBytes are each stream's bytes as JetStream reports them (one
	// replica's): what of the store grows with batches, runs or neither.
	StreamBytes map[string]uint64 `json:"stream_bytes"`
	Manifest    int64             `json:"manifest_bytes"`
	Finish      float64           `json:"finish_seconds"` // completion claimed to complete (run record)
	Finisher    string            `json:"finisher"`
}

// planAndWait runs cmd/planner over the simulator's hosts at batch size
// batch, then waits (at most limit) until the run is complete, measuring
// everything on the way.
//
// With drain set, the workers (sh) start only once the planner has exited:
// the run is then wholly queued, and Drain is the workers' own rate, not
// bounded by how fast the planner publishes. Otherwise the workers must
// be running already.
func (w *cpWorld) planAndWait(ctx context.Context, batch int, limit time.Duration, drain bool, sh shape) (runResult, error) {
	w.tap.reset()
	for _, p := range w.workers {
		_ = resetHWM(p.pid())
	}
	cpu0 := w.cpuNow()
	env := w.env("planner", "QFETCH_BATCH_SIZE="+strconv.Itoa(batch),
		"QFETCH_QUALYS_HOSTLIST_PAGE_SIZE="+strconv.Itoa(plannerPage),
		"QFETCH_QUALYS_HOSTLIST_DETAILS=None",
		// Detection runs only: a KnowledgeBase pass is batches of its own.
		"QFETCH_KB_ENABLED=false")
	start := time.Now()
	p, err := startProc("planner", w.h.planner, nil, env, w.secrets())
	if err != nil {
		return runResult{}, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.stop()
		return runResult{}, ctx.Err()
	}
	plannerLife := time.Since(start)
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return runResult{}, fmt.Errorf("planner exited %d:\n%s", code, p.out)
	}
	ru := p.rusage()
	var drainStart time.Time
	if drain {
		drainStart = time.Now()
		if err := w.startWorkers(ctx, sh, true); err != nil {
			return runResult{}, err
		}
	}
	runs, err := w.q.RunIDs(ctx)
	if err != nil || len(runs) != 1 {
		return runResult{}, fmt.Errorf("want one run, got %v (%v)", runs, err)
	}
	var rec ledger.RunRecord
	err = poll(ctx, limit, 25*time.Millisecond, func() (bool, error) {
		for _, p := range w.workers {
			if p.exited() {
				return false, fmt.Errorf("%s exited:\n%s", p.name, p.out)
			}
		}
		var err error
		if rec, err = w.q.GetRun(ctx, runs[0]); err != nil {
			return false, err
		}
		if rec.State == ledger.RunFailed {
			return false, fmt.Errorf("run failed: %s", rec.Error)
		}
		return rec.State == ledger.RunComplete, nil
	})
	if err != nil {
		return runResult{}, fmt.Errorf("run %s: %w", runs[0], err)
	}
	cpu1 := w.cpuNow()
	r := runResult{Run: rec.ID, Batches: rec.BatchesPlanned, Hosts: rec.HostsPlanned,
		Wall: rec.Completed.Sub(start).Seconds(), PlannerRun: plannerLife.Seconds(),
		CPU: map[string]float64{}, Tap: w.tap.counts(), Record: rec, PlannerRSS: rusageMaxRSS(ru),
		WorkerRSS: map[string]int64{}, Finish: rec.Completed.Sub(rec.FinishStarted).Seconds(), Finisher: rec.Finisher}
	for k, v := range cpu1 {
		r.CPU[k] = (v - cpu0[k]).Seconds()
	}
	r.CPU["planner"] = rusageCPU(ru).Seconds()
	if drain {
		// The workers' CPU counted from their start: cpu0 had none.
		r.Drain = rec.Completed.Sub(drainStart).Seconds()
	}
	r.AckSpan = r.Tap.LastAck.Sub(r.Tap.FirstAck).Seconds()
	for _, p := range w.workers {
		if hwm, err := procHWM(p.pid()); err == nil {
			r.WorkerRSS[p.name] = hwm
		}
	}
	for _, pid := range w.natsPIDs() {
		if rss, err := procStatusBytes(pid, "VmRSS:"); err == nil {
			r.NATSRSS += rss
		}
		if hwm, err := procHWM(pid); err == nil {
			r.NATSHWM += hwm
		}
	}
	if r.StoreBytes, err = w.storeBytes(); err != nil {
		return r, err
	}
	r.StreamBytes = map[string]uint64{}
	streams := w.js.ListStreams(ctx)
	for info := range streams.Info() {
		r.StreamBytes[info.Config.Name] = info.State.Bytes
	}
	if err := streams.Err(); err != nil {
		return r, fmt.Errorf("listing streams: %w", err)
	}
	st, err := w.h.s3.Client.StatObject(ctx, w.h.s3.Bucket, objstore.ManifestKey("qualys", rec.ID), minio.StatObjectOptions{})
	if err != nil {
		return r, fmt.Errorf("manifest.json: %w", err)
	}
	r.Manifest = st.Size
	return r, nil
}

// procStatusBytes is a kB field of /proc/<pid>/status in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", field)
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
