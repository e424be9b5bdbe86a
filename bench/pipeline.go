package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// dataRun is what the pipeline and memory scenarios share: a simulator
// sized for the target, a NATS server, the harness's view of the queue, and
// one worker process.
type dataRun struct {
	h *harness
	backing
	ids    []uint64
	bytes  int64 // the calibrated response size
	worker *proc

	hwmNoted bool
}

func (h *harness) startDataRun(ctx context.Context, name string, target int64) (*dataRun, error) {
	progress("%s: sizing the simulator for %s", name, sizeText(target))
	cfg, size, err := dataConfig(ctx, target, batchHosts)
	if err != nil {
		return nil, err
	}
	progress("%s: %d hosts, %.0f detections/host, ResultsSize %d: %s per response",
		name, batchHosts, cfg.MeanDetections, cfg.ResultsSize, sizeText(size))
	b, err := h.startBacking(ctx, name, cfg)
	if err != nil {
		return nil, err
	}
	return &dataRun{h: h, backing: b, bytes: size, ids: b.sim.ids(batchHosts)}, nil
}

// connectQueue opens the harness's own view of the queue.
func connectQueue(ctx context.Context, url string) (*nats.Conn, jetstream.JetStream, app.JetStream, error) {
	nc, err := nats.Connect(url, nats.Name("qfetch-bench"))
	if err != nil {
		return nil, nil, app.JetStream{}, err
	}
	_, js, q, err := connectQueueOn(ctx, nc)
	if err != nil {
		nc.Close()
		return nil, nil, app.JetStream{}, err
	}
	return nc, js, q, nil
}

// connectQueueOn sets the queue up on nc. It adopts the consumer: the
// worker's QFETCH_MAX_IN_FLIGHT owns it.
func connectQueueOn(ctx context.Context, nc *nats.Conn) (*nats.Conn, jetstream.JetStream, app.JetStream, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, app.JetStream{}, err
	}
	q, err := app.Queue(ctx, js, config.NATS{}, config.Fleet{MaxInFlight: 1}, 0, app.RolePlanner)
	if err != nil {
		return nil, nil, app.JetStream{}, err
	}
	return nc, js, q, nil
}

func (d *dataRun) stop() {
	if d.worker != nil {
		if err := d.worker.stop(); err != nil {
			progress("stopping the worker: %v", err)
		}
	}
	d.backing.stop()
}

// backing is what a scenario's workers run against: a simulator, a NATS
// server, and the harness's connection to it and view of the queue.
type backing struct {
	sim  *simServer
	nats *natsServer
	nc   *nats.Conn
	js   jetstream.JetStream
	q    app.JetStream
}

// startBacking serves cfg, starts NATS with its store under name and
// connects the harness's queue; on failure it stops what it started.
func (h *harness) startBacking(ctx context.Context, name string, cfg qualysim.Config) (b backing, err error) {
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	if b.sim, err = serveSim(cfg); err != nil {
		return b, err
	}
	if b.nats, err = startNATS(ctx, h.natsBin, filepath.Join(h.tmp, "nats-"+name)); err != nil {
		return b, err
	}
	if b.nc, b.js, b.q, err = connectQueue(ctx, b.nats.URL); err != nil {
		return b, err
	}
	return b, nil
}

// stop stops whichever of them were started.
func (b *backing) stop() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.nats != nil {
		if err := b.nats.stop(); err != nil {
			progress("stopping NATS: %v", err)
		}
	}
	if b.sim != nil {
		if err := b.sim.stop(); err != nil {
			progress("stopping the simulator: %v", err)
		}
	}
}

// qfetchEnv is the configuration of a planner or worker against this setup.
func (h *harness) qfetchEnv(sim *simServer, natsURL string, extra ...string) []string {
	return childEnv(append([]string{
		"QFETCH_QUALYS_URL=" + sim.URL,
		"QFETCH_QUALYS_USERNAME=" + sim.sim.Username(),
		"QFETCH_QUALYS_PASSWORD=" + sim.sim.Password(),
		"QFETCH_NATS_URL=" + natsURL,
		"QFETCH_S3_ENDPOINT=" + h.s3.Endpoint,
		"QFETCH_S3_SECURE=false",
		"QFETCH_S3_ACCESS_KEY=" + h.s3.AccessKey,
		"QFETCH_S3_SECRET_KEY=" + h.s3.SecretKey,
		"QFETCH_S3_BUCKET=" + h.s3.Bucket,
		"QFETCH_S3_REGION=us-east-1",
		"QFETCH_LOG_FORMAT=json",
	}, extra...)...)
}

func (h *harness) secrets(sim *simServer) []string {
	return []string{sim.sim.Password(), h.s3.SecretKey}
}

// startWorker starts cmd/worker (or, with a profile path, this binary's
// in-process copy of it) with one slot, and waits until it pulls.
func (d *dataRun) startWorker(ctx context.Context, profile string) error {
	env := d.h.qfetchEnv(d.sim, d.nats.URL,
		"QFETCH_WORKER_SLOTS=1", "QFETCH_WORKER_LISTEN=127.0.0.1:0", "QFETCH_MAX_IN_FLIGHT=1")
	var err error
	if profile == "" {
		d.worker, err = startProc("worker", d.h.worker, nil, env, d.h.secrets(d.sim))
	} else {
		d.worker, err = d.h.startChild(env, childJob{Mode: modeWorker, CPUProfile: profile}, d.h.secrets(d.sim))
	}
	if err != nil {
		return err
	}
	// Ready once its slot has a pull request waiting on the consumer.
	err = poll(ctx, readyTimeout, 20*time.Millisecond, func() (bool, error) {
		if d.worker.exited() {
			return false, fmt.Errorf("worker exited at start:\n%s", d.worker.out)
		}
		c, err := d.js.Consumer(ctx, msg.StreamBatches, msg.ConsumerWorkers)
		if err != nil {
			return false, nil
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting > 0, nil
	})
	if err != nil {
		return fmt.Errorf("worker not pulling: %w", err)
	}
	return nil
}

// stopWorker ends the worker process and waits for it.
func (d *dataRun) stopWorker() error {
	err := d.worker.stop()
	d.worker = nil
	return err
}

// workerRep hands the worker one batch as a one-batch run and measures it
// until the run is complete: its own recorded batch duration, the CPU it
// used meanwhile, and its peak RSS (reset before).
func (d *dataRun) workerRep(ctx context.Context, tag string) (sample, error) {
	run, err := openRun(ctx, d.q, tag, [][]uint64{d.ids})
	if err != nil {
		return sample{}, err
	}
	pid := d.worker.pid()
	hwmReset := resetHWM(pid) == nil
	cpu0, err := procCPU(pid)
	if err != nil {
		return sample{}, err
	}
	others := d.othersCPU()
	// Generous: a loaded box at 20 MiB/s, plus a minute.
	limit := time.Minute + time.Duration(d.bytes/(20<<20))*time.Second
	wall, err := run.publishAndWait(ctx, d.q, []*proc{d.worker}, limit)
	if err != nil {
		return sample{}, fmt.Errorf("run %s: %w; worker output:\n%s", run.id, err, d.worker.out)
	}
	cpu1, err := procCPU(pid)
	if err != nil {
		return sample{}, err
	}
	minioCPU, natsCPU, harnessCPU := others()
	hwm, err := procHWM(pid)
	if err != nil {
		return sample{}, err
	}
	if !hwmReset && !d.hwmNoted {
		d.hwmNoted = true
		d.h.rep.note("could not reset the worker's VmHWM between reps: its peak RSS is since process start")
	}
	done, err := d.q.DoneBatches(ctx, run.id)
	if err != nil || len(done) != 1 {
		return sample{}, fmt.Errorf("run %s: %d batch results, %v", run.id, len(done), err)
	}
	res := done[0]
	var n int64
	for _, o := range res.Objects {
		n += o.Bytes
		if err := d.h.s3.Client.RemoveObject(ctx, d.h.s3.Bucket, o.Key, minio.RemoveObjectOptions{}); err != nil {
			return sample{}, err
		}
	}
	return sample{Seconds: res.Duration, Bytes: n, CPUSeconds: (cpu1 - cpu0).Seconds(), PeakRSS: hwm,
		Wall: wall.Seconds(), Hosts: res.HostsReturned,
		MinIOCPU: minioCPU, NATSCPU: natsCPU, HarnessCPU: harnessCPU}, nil
}

// childRep runs one baseline transfer in a child process.
func (d *dataRun) childRep(ctx context.Context, mode, tag, profile string) (sample, error) {
	key := "bench/" + runID(tag) + ".xml"
	job := childJob{
		Mode: mode, URL: d.sim.URL, Username: d.sim.sim.Username(), Password: d.sim.sim.Password(),
		Form:     detectionForm(d.ids, time.Now().UTC().Truncate(time.Second)),
		Endpoint: d.h.s3.Endpoint, AccessKey: d.h.s3.AccessKey, SecretKey: d.h.s3.SecretKey,
		Bucket: d.h.s3.Bucket, Key: key, CPUProfile: profile,
	}
	data, err := json.Marshal(job)
	if err != nil {
		return sample{}, err
	}
	cmd := exec.CommandContext(ctx, d.h.self, "-child")
	cmd.Env = childEnv()
	cmd.Stdin = bytes.NewReader(data)
	var stdout bytes.Buffer
	stderr := newTail(mode, d.h.secrets(d.sim))
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	others := d.othersCPU()
	if err := cmd.Run(); err != nil {
		return sample{}, fmt.Errorf("%s child: %w\n%s", mode, err, stderr)
	}
	minioCPU, natsCPU, harnessCPU := others()
	ru := cmd.ProcessState.SysUsage()
	var res childResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return sample{}, fmt.Errorf("%s child: %w", mode, err)
	}
	if err := d.h.s3.Client.RemoveObject(ctx, d.h.s3.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return sample{}, err
	}
	return sample{Seconds: res.Seconds, Bytes: res.Bytes, CPUSeconds: res.CPUSeconds, PeakRSS: rusageMaxRSS(asRusage(ru)),
		MinIOCPU: minioCPU, NATSCPU: natsCPU, HarnessCPU: harnessCPU}, nil
}

// othersCPU starts counting the CPU of MinIO, NATS and this process; the
// returned func gives each one's seconds since.
func (d *dataRun) othersCPU() func() (minio, nats, harness float64) {
	return cpuSince(d.h.s3.pid(), d.nats.pid())
}

// startChild starts this binary as a long-running child with job on stdin.
func (h *harness) startChild(env []string, job childJob, secrets []string) (*proc, error) {
	data, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	return startProcStdin("bench-child", h.self, []string{"-child"}, env, secrets, data)
}

func runID(tag string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("bench-%s-%s-%s", tag, time.Now().UTC().Format("150405"), hex.EncodeToString(b[:]))
}

// pipeline: one worker slot streaming one large detection response into
// MinIO through the whole worker path (validator, multipart upload,
// InProgress, record, finish), against a raw io.Copy of the same response
// into minio-go's PutObject with size -1 and the same part size, in a
// process of its own; interleaved rep by rep. Target: throughput ≥ 0.95 ×
// raw. One worker process serves every rep, as in production.
func (h *harness) pipeline(ctx context.Context) (err error) {
	d, err := h.startDataRun(ctx, "pipeline", h.o.spec.PipelineBytes)
	if err != nil {
		return err
	}
	defer d.stop()
	if err := d.startWorker(ctx, ""); err != nil {
		return err
	}
	size := sizeText(d.bytes)
	raw := &row{Scenario: "pipeline", Case: "raw io.Copy", Size: size}
	wk := &row{Scenario: "pipeline", Case: "worker", Size: size}
	for i := range h.o.reps {
		s, err := d.childRep(ctx, modeRaw, "raw", "")
		if err != nil {
			return err
		}
		progress("pipeline %d/%d raw:    %.2f s, %s, CPU %.2f s, RSS %.1f MiB", i+1, h.o.reps, s.Seconds, sizeText(s.Bytes), s.CPUSeconds, float64(s.PeakRSS)/mib)
		raw.Samples = append(raw.Samples, s)
		if s, err = d.workerRep(ctx, "pipe"); err != nil {
			return err
		}
		progress("pipeline %d/%d worker: %.2f s (%.2f s to complete), %s, CPU %.2f s, RSS %.1f MiB", i+1, h.o.reps, s.Seconds, s.Wall, sizeText(s.Bytes), s.CPUSeconds, float64(s.PeakRSS)/mib)
		wk.Samples = append(wk.Samples, s)
	}
	h.checkSameBytes("pipeline", raw, wk)
	raw.derive()
	wk.derive()
	wk.against(raw)
	wk.Target = fmt.Sprintf("throughput ≥ %.2f × raw", pipelineRatio)
	wk.Verdict = verdict(wk.Ratio >= pipelineRatio)
	h.rep.add(raw)
	h.rep.add(wk)
	h.rep.note("pipeline: one long-lived worker for all reps; its peak RSS per rep is VmHWM reset before the batch, so memory kept from earlier batches counts")

	if h.o.cpuProfile == "" {
		return nil
	}
	// One more batch through an in-process copy of the worker, profiled.
	if err := d.stopWorker(); err != nil {
		return err
	}
	if err := d.startWorker(ctx, h.o.cpuProfile); err != nil {
		return err
	}
	s, err := d.workerRep(ctx, "prof")
	if err != nil {
		return err
	}
	if err := d.stopWorker(); err != nil {
		return err
	}
	rawProfile := h.o.cpuProfile + ".raw"
	r, err := d.childRep(ctx, modeRaw, "raw", rawProfile)
	if err != nil {
		return err
	}
	h.rep.note("CPU profiles: worker path (in-process copy of cmd/worker, one %s batch, %.2f s) in %s (heap: %s.heap); raw io.Copy (%.2f s) in %s: go tool pprof -top <file>",
		sizeText(s.Bytes), s.Seconds, h.o.cpuProfile, h.o.cpuProfile, r.Seconds, rawProfile)
	return nil
}

// memory: the peak RSS of a fresh worker process streaming a larger
// response (target ≤ 64 MiB), beside a process that reads the response
// whole before uploading it.
func (h *harness) memory(ctx context.Context) error {
	d, err := h.startDataRun(ctx, "memory", h.o.spec.MemoryBytes)
	if err != nil {
		return err
	}
	defer d.stop()
	size := sizeText(d.bytes)
	naive := &row{Scenario: "memory", Case: "naive ReadAll", Size: size}
	wk := &row{Scenario: "memory", Case: "worker", Size: size}
	var idle []float64
	for i := range h.o.reps {
		s, err := d.childRep(ctx, modeNaive, "naive", "")
		if err != nil {
			return err
		}
		progress("memory %d/%d naive:  %.2f s, %s, RSS %.1f MiB", i+1, h.o.reps, s.Seconds, sizeText(s.Bytes), float64(s.PeakRSS)/mib)
		naive.Samples = append(naive.Samples, s)

		// A fresh worker each rep: its peak is this response's alone, not
		// what earlier batches left behind.
		if err := d.startWorker(ctx, ""); err != nil {
			return err
		}
		start, err := procHWM(d.worker.pid())
		if err != nil {
			return err
		}
		idle = append(idle, float64(start))
		if s, err = d.workerRep(ctx, "mem"); err != nil {
			return err
		}
		p := d.worker
		if err := d.stopWorker(); err != nil {
			return err
		}
		s.PeakRSS = max(s.PeakRSS, rusageMaxRSS(p.rusage()))
		progress("memory %d/%d worker: %.2f s, %s, RSS %.1f MiB", i+1, h.o.reps, s.Seconds, sizeText(s.Bytes), float64(s.PeakRSS)/mib)
		wk.Samples = append(wk.Samples, s)
	}
	h.checkSameBytes("memory", naive, wk)
	naive.derive()
	wk.derive()
	wk.rssTarget()
	h.rep.add(naive)
	h.rep.add(wk)
	h.rep.note("memory: a fresh worker per rep, peak RSS = its ru_maxrss at exit; before its batch it was at %.1f MiB (median)", median(idle)/mib)
	return nil
}

// checkSameBytes notes when the baseline and the worker did not move the
// same bytes: the comparison would then be off.
func (h *harness) checkSameBytes(scenario string, a, b *row) {
	var sizes []string
	seen := map[int64]bool{}
	for _, r := range []*row{a, b} {
		for _, s := range r.Samples {
			if !seen[s.Bytes] {
				seen[s.Bytes] = true
				sizes = append(sizes, fmt.Sprintf("%s %d", r.Case, s.Bytes))
			}
		}
	}
	if len(seen) > 1 {
		h.rep.note("%s: the responses differ in size between reps or cases: %s", scenario, strings.Join(sizes, ", "))
	}
}
