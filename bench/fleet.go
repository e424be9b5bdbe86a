package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// fleet is a simulator, a NATS server and W cmd/worker processes of S
// slots each, sharing QFETCH_MAX_IN_FLIGHT: what the fleet, sweep and
// faults scenarios run batches through.
type fleet struct {
	h    *harness
	name string
	backing
	js      jetstream.JetStream
	q       app.JetStream
	workers []*proc
	// maxBackoff, when set, is the workers' QFETCH_WORKER_MAX_BACKOFF; env
	// is added to theirs.
	maxBackoff time.Duration
	env        []string
}

// startFleet serves cfg and starts NATS; the workers come with setWorkers.
func (h *harness) startFleet(ctx context.Context, name string, cfg qualysim.Config) (_ *fleet, err error) {
	f := &fleet{h: h, name: name}
	defer func() {
		if err != nil {
			f.stop()
		}
	}()
	if f.sim, err = serveSim(cfg); err != nil {
		return nil, err
	}
	if f.nats, err = startNATS(ctx, h.natsBin, filepath.Join(h.tmp, "nats-"+name)); err != nil {
		return nil, err
	}
	if f.nc, f.js, f.q, err = connectQueue(ctx, f.nats.URL); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *fleet) stop() {
	f.stopWorkers()
	f.backing.stop()
}

func (f *fleet) stopWorkers() {
	for _, w := range f.workers {
		if err := w.stop(); err != nil {
			progress("stopping a worker: %v", err)
		}
	}
	f.workers = nil
}

// setWorkers replaces the fleet's workers by w processes of s slots, the
// consumer's in-flight cap at inFlight, and waits until each one pulls.
func (f *fleet) setWorkers(ctx context.Context, w, s, inFlight int) error {
	f.stopWorkers()
	vars := []string{"QFETCH_WORKER_SLOTS=" + strconv.Itoa(s), "QFETCH_WORKER_LISTEN=127.0.0.1:0",
		"QFETCH_MAX_IN_FLIGHT=" + strconv.Itoa(inFlight)}
	if f.maxBackoff > 0 {
		vars = append(vars, "QFETCH_WORKER_MAX_BACKOFF="+f.maxBackoff.String())
	}
	env := f.h.qfetchEnv(f.sim, f.nats.URL, append(vars, f.env...)...)
	for i := range w {
		p, err := startProc(fmt.Sprintf("worker-%d", i+1), f.h.worker, nil, env, f.h.secrets(f.sim))
		if err != nil {
			return err
		}
		f.workers = append(f.workers, p)
	}
	// Ready once every worker has at least one pull waiting.
	err := poll(ctx, readyTimeout, 20*time.Millisecond, func() (bool, error) {
		for _, p := range f.workers {
			if p.exited() {
				return false, fmt.Errorf("%s exited at start:\n%s", p.name, p.out)
			}
		}
		c, err := f.js.Consumer(ctx, msg.StreamBatches, msg.ConsumerWorkers)
		if err != nil {
			return false, nil
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting >= w, nil
	})
	if err != nil {
		return fmt.Errorf("workers not pulling: %w", err)
	}
	return nil
}

// fleetResult is one run through the fleet.
type fleetResult struct {
	sample
	Span     float64 // first batch's request to last batch recorded
	Requests int64   // detection calls the simulator saw
	Outcomes map[string]int64
	Peak     int // most detection calls running at once
	// BatchSeconds are the batches' own durations (pull to recorded).
	BatchSeconds []float64
}

// runBatches publishes one run of the given batches and waits until it is
// complete. Seconds is the wall time from publish to complete.
func (f *fleet) runBatches(ctx context.Context, tag string, batches [][]uint64, limit time.Duration) (fleetResult, error) {
	run := runID(tag)
	before := time.Now().UTC().Truncate(time.Second)
	hosts := 0
	for _, b := range batches {
		hosts += len(b)
	}
	if _, err := f.q.CreateRun(ctx, ledger.RunRecord{
		ID: run, Before: before, State: ledger.RunFetching,
		PlanningComplete: true, BatchesPlanned: len(batches), HostsPlanned: hosts,
	}); err != nil {
		return fleetResult{}, err
	}
	f.sim.sim.ResetStats()
	cpu0 := make([]time.Duration, len(f.workers))
	for i, w := range f.workers {
		c, err := procCPU(w.pid())
		if err != nil {
			return fleetResult{}, err
		}
		cpu0[i] = c
		// The workers live across runs: their peak RSS is this run's.
		if err := resetHWM(w.pid()); err != nil {
			return fleetResult{}, err
		}
	}
	others := cpuSince(f.h.s3.pid(), f.nats.pid())
	start := time.Now()
	pub := f.q.Publisher(msg.PublisherOptions{})
	for i, b := range batches {
		if err := pub.Publish(ctx, msg.Batch{Run: run, Number: i + 1, Before: before, IDs: qualys.EncodeIDs(b), Hosts: len(b)}); err != nil {
			return fleetResult{}, err
		}
	}
	if err := pub.Wait(ctx); err != nil {
		return fleetResult{}, err
	}
	err := poll(ctx, limit, 25*time.Millisecond, func() (bool, error) {
		for _, w := range f.workers {
			if w.exited() {
				return false, fmt.Errorf("%s exited:\n%s", w.name, w.out)
			}
		}
		rec, err := f.q.GetRun(ctx, run)
		if err != nil {
			return false, err
		}
		if rec.State == ledger.RunFailed {
			return false, fmt.Errorf("run failed: %s", rec.Error)
		}
		return rec.State == ledger.RunComplete, nil
	})
	wall := time.Since(start)
	if err != nil {
		var outs []string
		for _, w := range f.workers {
			outs = append(outs, w.out.String())
		}
		return fleetResult{}, fmt.Errorf("run %s: %w; workers' output:\n%s", run, err, strings.Join(outs, "\n"))
	}
	minioCPU, natsCPU, harnessCPU := others()
	r := fleetResult{sample: sample{Wall: wall.Seconds(), Batches: len(batches),
		MinIOCPU: minioCPU, NATSCPU: natsCPU, HarnessCPU: harnessCPU}}
	for i, w := range f.workers {
		c, err := procCPU(w.pid())
		if err != nil {
			return fleetResult{}, err
		}
		r.CPUSeconds += (c - cpu0[i]).Seconds()
		if hwm, err := procHWM(w.pid()); err == nil {
			r.PeakRSS = max(r.PeakRSS, hwm)
		}
	}
	st := f.sim.sim.Stats().Endpoints[qualysim.Detection]
	r.Requests, r.Outcomes, r.Peak = st.Requests, st.Outcomes, st.PeakRunning

	done, err := f.q.DoneBatches(ctx, run)
	if err != nil || len(done) < len(batches) {
		return fleetResult{}, fmt.Errorf("run %s: %d batch results for %d batches, %v", run, len(done), len(batches), err)
	}
	var first, last time.Time
	for _, d := range done {
		b := d.At.Add(-time.Duration(d.Duration * float64(time.Second)))
		if first.IsZero() || b.Before(first) {
			first = b
		}
		if d.At.After(last) {
			last = d.At
		}
		r.Hosts += d.HostsReturned
		r.BatchSeconds = append(r.BatchSeconds, d.Duration)
		for _, o := range d.Objects {
			r.Bytes += o.Bytes
		}
	}
	r.Span = last.Sub(first).Seconds()
	r.Seconds = wall.Seconds()
	return r, f.h.removePrefix(ctx, "qualys/runs/"+run+"/")
}

// sameBatches is n batches of the same ids: every batch answers the same bytes.
func sameBatches(ids []uint64, n int) [][]uint64 {
	out := make([][]uint64, n)
	for i := range out {
		out[i] = ids
	}
	return out
}

// fleetCase is one W×S shape against a simulator of concurrency C and B
// bytes/s per connection.
type fleetCase struct{ C, W, S, B int }

// fleetUtil: the simulator paces every detection body at B bytes/s and
// admits C calls at once; W workers × S slots with QFETCH_MAX_IN_FLIGHT=C
// fetch batches of one size. Utilisation = bytes / busy span / (C × B),
// the span from the first batch's request to the last batch recorded.
// Target ≥ 0.97 where W×S ≥ C; below, the ceiling is W×S / C.
func (h *harness) fleetUtil(ctx context.Context) error {
	spec := h.o.spec
	byC := map[int][]fleetCase{}
	var cs []int
	for _, c := range spec.FleetCases {
		if _, ok := byC[c.C]; !ok {
			cs = append(cs, c.C)
		}
		byC[c.C] = append(byC[c.C], c)
	}
	for _, c := range cs {
		if err := h.fleetUtilC(ctx, byC[c]); err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) fleetUtilC(ctx context.Context, cases []fleetCase) error {
	spec := h.o.spec
	C, B := cases[0].C, cases[0].B
	// One batch is a few seconds' transfer at B: the ramp and the tail
	// (one batch per slot) stay small against the whole.
	target := int64(B) * spec.FleetBatchSeconds
	name := fmt.Sprintf("fleet-c%d", C)
	progress("%s: sizing the simulator for %s batches", name, sizeText(target))
	cfg, size, err := dataConfig(ctx, target, batchHosts)
	if err != nil {
		return err
	}
	cfg.ConcurrencyLimit = C
	cfg.Faults = qualysim.Faults{Prob: map[qualysim.FaultKind]float64{qualysim.FaultBandwidth: 1}, Bandwidth: B}
	f, err := h.startFleet(ctx, name, cfg)
	if err != nil {
		return err
	}
	defer f.stop()
	ids := f.sim.ids(batchHosts)
	// Enough batches that each of the C calls runs FleetRounds in a row.
	n := C * spec.FleetRounds
	ideal := float64(C) * float64(B)
	for _, fc := range cases {
		if err := f.setWorkers(ctx, fc.W, fc.S, C); err != nil {
			return err
		}
		x := &row{Scenario: "fleet", Case: fmt.Sprintf("C=%d B=%s/s W×S=%d×%d", C, sizeText(int64(B)), fc.W, fc.S),
			Size: fmt.Sprintf("%d × %s", n, sizeText(size))}
		var utils, batchSecs []float64
		var conflicts int64
		peak := 0
		for i := range h.o.reps {
			// The slowest shape (one slot) needs n batches × the batch's time.
			limit := time.Minute + time.Duration(float64(n)*float64(size)/float64(B)*float64(time.Second))
			r, err := f.runBatches(ctx, "fleet", sameBatches(ids, n), limit)
			if err != nil {
				return err
			}
			u := float64(r.Bytes) / r.Span / ideal
			utils = append(utils, u)
			batchSecs = append(batchSecs, r.BatchSeconds...)
			peak = max(peak, r.Peak)
			for k, v := range r.Outcomes {
				if strings.HasPrefix(k, "409/") {
					conflicts += v
				}
			}
			progress("fleet %s %d/%d: %s in %.2f s busy (%.2f s wall), utilisation %.3f, peak calls %d, requests %d",
				x.Case, i+1, h.o.reps, sizeText(r.Bytes), r.Span, r.Wall, u, r.Peak, r.Requests)
			// The row's time is the busy span: the rate column is then the fleet's.
			r.Seconds = r.Span
			x.Samples = append(x.Samples, r.sample)
		}
		x.derive()
		x.Ratio, x.RatioBest = median(utils), slices.Max(utils)
		if fc.W*fc.S >= C {
			x.Target = "throughput ≥ 0.97 × C×B"
			x.Verdict = verdict(x.Ratio >= 0.97)
		} else {
			x.Target = fmt.Sprintf("ceiling %.2f (W×S/C)", float64(fc.W*fc.S)/float64(C))
		}
		h.rep.add(x)
		h.rep.note("fleet %s: a batch takes %.2f s (median, pull to recorded) against %.2f s for its bytes at B; %d calls refused 409 over %d reps, peak %d calls at once",
			x.Case, median(batchSecs), float64(size)/float64(B), conflicts, h.o.reps, peak)
	}
	h.rep.note("fleet C=%d: ratio column is utilisation, bytes / busy span / (C × B), median / best; every batch the same %d hosts, %s; peak RSS is the largest worker's VmHWM, reset before each run",
		C, batchHosts, sizeText(size))
	return nil
}

// sweepConfig is a subscription of hosts hosts with small answers (a few
// detections, no RESULTS), so that the think-time is what counts.
func sweepConfig(hosts int64, t think) qualysim.Config {
	cfg := simConfig(hosts)
	cfg.MeanDetections = 4
	cfg.ResultsSize = qualysim.Off
	cfg.Overhead, cfg.PerHostCost = t.Overhead, t.PerHost
	cfg.ConcurrencyLimit = 2
	return cfg
}

// split cuts ids into batches of at most n.
func split(ids []uint64, n int) [][]uint64 {
	var out [][]uint64
	for len(ids) > 0 {
		k := min(n, len(ids))
		out = append(out, ids[:k])
		ids = ids[k:]
	}
	return out
}

// Best practice for Host List Detection batches (qualys-api.md §6.1: the
// vendor splits ids into 1,000–5,000) and Qualys' standard rate limit.
const (
	bestBatchMin, bestBatchMax = 1000, 5000
	callsPerHour               = 300
)

// batchSweep: the same hosts fetched in batches of each size, the
// simulator thinking Think.Overhead per call plus Think.PerHost per host
// before the first byte, one worker × 2 slots against concurrency 2. Small
// batches pay the overhead often; large ones leave a slot idle at the tail
// (fewer batches than slots in the last round) and wait longer for each
// first byte. Time is publish to run complete; the ratio column is speed
// against the 1000-host batch (QFETCH_BATCH_SIZE's default).
func (h *harness) batchSweep(ctx context.Context) error {
	spec := h.o.spec
	const slots = 2
	f, err := h.startFleet(ctx, "sweep", sweepConfig(spec.SweepHosts, spec.Think))
	if err != nil {
		return err
	}
	defer f.stop()
	if err := f.setWorkers(ctx, 1, slots, slots); err != nil {
		return err
	}
	ids := f.sim.ids(int(spec.SweepHosts))
	rows := map[int]*row{}
	for _, n := range spec.SweepSizes {
		rows[n] = &row{Scenario: "sweep", Case: fmt.Sprintf("batch %d", n),
			Size: fmt.Sprintf("%s, think %v", hostsText(spec.SweepHosts), spec.Think)}
	}
	// Interleaved rep by rep, so that a noisy minute does not land on one size.
	for i := range h.o.reps {
		for _, n := range spec.SweepSizes {
			batches := split(ids, n)
			limit := time.Minute + time.Duration(len(batches))*(spec.Think.of(n)+5*time.Second)
			r, err := f.runBatches(ctx, "sweep", batches, limit)
			if err != nil {
				return err
			}
			progress("sweep batch %d %d/%d: %d batches, %.2f s, %s", n, i+1, h.o.reps, len(batches), r.Seconds, sizeText(r.Bytes))
			rows[n].Samples = append(rows[n].Samples, r.sample)
		}
	}
	base := rows[1000]
	fastest := rows[spec.SweepSizes[0]]
	var model []string
	for _, n := range spec.SweepSizes {
		x := rows[n]
		x.derive()
		// Hosts per second says what a batch size buys whatever the host count.
		x.Rate = median(each(x.Samples, func(s sample) float64 { return float64(spec.SweepHosts) / s.Seconds }))
		x.RateUnit = "hosts/s"
		if x.SecondsMed < fastest.SecondsMed {
			fastest = x
		}
		if n >= bestBatchMin && n <= bestBatchMax {
			x.Target = fmt.Sprintf("best practice %d–%d", bestBatchMin, bestBatchMax)
		}
		// The think-time alone, slots busy in rounds: what the worker and
		// the transfer add comes on top.
		rounds := (int(spec.SweepHosts) + n*slots - 1) / (n * slots)
		model = append(model, fmt.Sprintf("%d %.1f s", n, float64(rounds)*spec.Think.of(n).Seconds()))
	}
	for _, n := range spec.SweepSizes {
		if base != nil && rows[n] != base {
			rows[n].against(base)
		}
		h.rep.add(rows[n])
	}
	var inRange []string
	for _, n := range spec.SweepSizes {
		if n >= bestBatchMin && n <= bestBatchMax {
			inRange = append(inRange, fmt.Sprintf("%d %.2f×", n, rows[n].SecondsMed/fastest.SecondsMed))
		}
	}
	h.rep.note("sweep: one worker × %d slots, concurrency %d; the simulator thinks %v per call + %v per host before the first byte (plausible, not measured: Qualys' own are seconds to minutes; the ratio that shapes the curve is one call's overhead = %d hosts); time is publish to run complete",
		slots, slots, spec.Think.Overhead, spec.Think.PerHost, int(spec.Think.Overhead/max(spec.Think.PerHost, 1)))
	h.rep.note("sweep: think-time alone, in rounds of %d calls: %s; fastest measured: %s; best-practice sizes against it (time ×): %s; at Qualys' standard %d detection calls/h a batch of n caps a subscription at %d·n hosts/h (1000: %dk/h, 5000: %.1fM/h)",
		slots, strings.Join(model, ", "), fastest.Case, strings.Join(inRange, ", "), callsPerHour, callsPerHour, callsPerHour, float64(callsPerHour*5000)/1e6)
	return nil
}

// faultTax: the same run clean and with 10 % of detection calls failing
// (qualysim.Spread: 500, 503, error document, 999, reset, stall, cut in
// equal shares), interleaved, on the sweep's think-time. Each rep serves a
// new simulator seed (its own hosts and fault draws), shared by its clean
// and faulty runs. The worker is cmd/worker with QFETCH_WORKER_MAX_BACKOFF
// at FaultMaxBackoff: its default back-off starts at 30 s, which against
// seconds-long batches would measure nothing but that wait.
func (h *harness) faultTax(ctx context.Context) error {
	spec := h.o.spec
	hosts := spec.FaultBatches * spec.FaultBatchHosts
	size := fmt.Sprintf("%d × %d hosts", spec.FaultBatches, spec.FaultBatchHosts)
	clean := &row{Scenario: "faults", Case: "clean", Size: size}
	faulty := &row{Scenario: "faults", Case: "10 % faults", Size: size}
	var retries, paired []float64
	outcomes := map[string]int64{}
	for i := range h.o.reps {
		seed := uint64(i + 1)
		err := h.faultRep(ctx, seed, hosts, func(f *fleet, batches [][]uint64) error {
			var secs [2]float64
			for j, x := range []*row{clean, faulty} {
				fs := qualysim.Faults{StallFor: spec.FaultStall}
				if x == faulty {
					fs.Prob = qualysim.Spread(0.1)
				}
				if err := f.sim.sim.SetFaults(fs); err != nil {
					return err
				}
				// A failed call waits at most FaultMaxBackoff before its retry,
				// a stall FaultStall; a generous bound for either, every batch.
				per := spec.Think.of(spec.FaultBatchHosts) + spec.FaultMaxBackoff + spec.FaultStall
				limit := 2*time.Minute + time.Duration(len(batches))*per
				r, err := f.runBatches(ctx, "faults", batches, limit)
				if err != nil {
					return err
				}
				rt := float64(r.Requests-int64(len(batches))) / float64(len(batches))
				progress("faults %s seed %d (%d/%d): %.2f s, %d requests (%.2f retries/batch), %v", x.Case, seed, i+1, h.o.reps, r.Seconds, r.Requests, rt, r.Outcomes)
				if x == faulty {
					retries = append(retries, rt)
					for k, v := range r.Outcomes {
						outcomes[k] += v
					}
				}
				x.Samples = append(x.Samples, r.sample)
				secs[j] = r.Seconds
			}
			paired = append(paired, secs[0]/secs[1])
			return nil
		})
		if err != nil {
			return err
		}
	}
	clean.derive()
	faulty.derive()
	faulty.against(clean)
	faulty.RetriesPerBatch = median(retries)
	h.rep.add(clean)
	h.rep.add(faulty)
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, outcomes[k]))
	}
	var pairs []string
	for _, p := range paired {
		pairs = append(pairs, fmt.Sprintf("%.3f", p))
	}
	h.rep.note("faults: one worker × 2 slots, concurrency 2, think %v, seeds 1..%d (one per rep, its clean and faulty runs share it); %.2f retries per batch (median; requests beyond one per batch: %s); clean/faulty throughput per seed %s; detection outcomes over all faulty reps: %s",
		spec.Think, h.o.reps, median(retries), joinFloats(retries), strings.Join(pairs, ", "), strings.Join(parts, ", "))
	h.rep.note("faults: bench settings, not production: the worker's retry delay is capped at %v (QFETCH_WORKER_MAX_BACKOFF; by default the first retry waits 15–30 s and the cap is 2 m), QFETCH_WORKER_PROBE_EVERY=%v, a stall pauses the body %v (qualysim default 30 s)",
		spec.FaultMaxBackoff, faultProbeEvery, spec.FaultStall)
	return nil
}

// faultProbeEvery is the faults scenario's QFETCH_WORKER_PROBE_EVERY (the
// least it takes): a pause for a fault that looks fleet-wide lasts seconds.
const faultProbeEvery = time.Second

// faultRep serves a simulator with seed and the first hosts hosts in
// batches of FaultBatchHosts, runs one worker × 2 slots on it and calls run.
func (h *harness) faultRep(ctx context.Context, seed uint64, hosts int, run func(*fleet, [][]uint64) error) error {
	spec := h.o.spec
	cfg := sweepConfig(int64(hosts), spec.Think)
	cfg.Seed = seed
	f, err := h.startFleet(ctx, fmt.Sprintf("faults-%d", seed), cfg)
	if err != nil {
		return err
	}
	defer f.stop()
	f.maxBackoff = spec.FaultMaxBackoff
	f.env = []string{"QFETCH_WORKER_PROBE_EVERY=" + faultProbeEvery.String()}
	if err := f.setWorkers(ctx, 1, 2, 2); err != nil {
		return err
	}
	return run(f, split(f.sim.ids(hosts), spec.FaultBatchHosts))
}

func joinFloats(v []float64) string {
	var s []string
	for _, x := range v {
		s = append(s, fmt.Sprintf("%.2f", x))
	}
	return strings.Join(s, ", ")
}
