package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/hostids"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// queueTick is how often a watched run samples the work queue.
const queueTick = 100 * time.Millisecond

// queueSample is the work queue as one tick saw it.
type queueSample struct {
	At time.Time
	msg.QueueState
}

// watchedRun is one run published and followed to its end, tick by tick.
type watchedRun struct {
	id        string
	published time.Time
	wall      time.Duration // publish to the run's end
	state     ledger.RunState
	samples   []queueSample
	calls     []call // detection calls, by start
	done      []ledger.BatchResult
	dead      int // the run's dead letters
	stats     qualysim.EndpointStats
}

// watchRun publishes batches as one run and samples the queue every
// queueTick until the run completes or fails, or has settled with dead
// letters (nothing queued, in flight or waiting). tick, when set, is
// called at each sample.
func (f *fleet) watchRun(ctx context.Context, tag string, batches [][]uint64, limit time.Duration,
	tick func(run string, s queueSample) error) (watchedRun, error) {
	run, err := openRun(ctx, f.q, tag, batches)
	if err != nil {
		return watchedRun{}, err
	}
	f.sim.sim.ResetStats()
	f.sim.calls.take()
	w := watchedRun{id: run.id, published: time.Now()}
	pub := f.q.Publisher(msg.PublisherOptions{})
	for i, b := range batches {
		if err := pub.Publish(ctx, msg.Batch{Run: run.id, Number: i + 1, Before: run.before, IDs: hostids.Of(b).String(), Hosts: len(b)}); err != nil {
			return w, err
		}
	}
	if err := pub.Wait(ctx); err != nil {
		return w, err
	}
	err = poll(ctx, limit, queueTick, func() (bool, error) {
		for _, p := range f.workers {
			if p.exited() {
				return false, fmt.Errorf("%s exited:\n%s", p.name, p.out)
			}
		}
		st, err := f.q.State(ctx)
		if err != nil {
			return false, err
		}
		s := queueSample{At: time.Now(), QueueState: st}
		w.samples = append(w.samples, s)
		if tick != nil {
			if err := tick(run.id, s); err != nil {
				return false, err
			}
		}
		rec, err := f.q.GetRun(ctx, run.id)
		if err != nil {
			return false, err
		}
		w.state = rec.State
		switch rec.State {
		case ledger.RunComplete, ledger.RunFailed, ledger.RunAcceptedIncomplete:
			return true, nil
		}
		settled := st.Queued == 0 && st.InFlight == 0 && st.Waiting == 0
		return settled && st.DeadLetters > 0, nil
	})
	w.wall = time.Since(w.published)
	if err != nil {
		return w, fmt.Errorf("run %s: %w", run.id, err)
	}
	w.calls = f.sim.calls.take()
	w.stats = f.sim.sim.Stats().Endpoints[qualysim.Detection]
	if w.done, err = f.q.DoneBatches(ctx, run.id); err != nil {
		return w, err
	}
	if w.dead, err = f.q.DeadLetterCount(ctx, run.id); err != nil {
		return w, err
	}
	return w, f.h.removePrefix(ctx, "qualys/runs/"+run.id+"/")
}

// queuedSpans are the intervals in which work was queued: from each
// sample that saw a batch ready for delivery (the consumer's NumPending:
// batches published or whose retry schedule has fired, not yet delivered)
// to the next sample. Batches waiting out a back-off as a schedule are not
// queued: no slot may take them before they are due.
func (w watchedRun) queuedSpans() []interval {
	var out []interval
	for i := 0; i+1 < len(w.samples); i++ {
		if w.samples[i].Queued == 0 {
			continue
		}
		iv := interval{w.samples[i].At, w.samples[i+1].At}
		if n := len(out); n > 0 && out[n-1].To.Equal(iv.From) {
			out[n-1].To = iv.To
			continue
		}
		out = append(out, iv)
	}
	// Work is queued from the publish on: the first sample comes a tick
	// later, and the first pull happens before it.
	if len(out) > 0 && len(w.calls) > 0 && w.calls[0].Start.Before(out[0].From) {
		out[0].From = w.calls[0].Start
	}
	return out
}

// queuedUtil is the busy call-time inside the queued spans over C × their
// length, and that length in seconds.
func (w watchedRun) queuedUtil(c int) (util, seconds float64) {
	ivs := w.queuedSpans()
	for _, iv := range ivs {
		seconds += iv.seconds()
	}
	if seconds == 0 {
		return 0, 0
	}
	return busyIn(w.calls, ivs).Seconds() / (float64(c) * seconds), seconds
}

// lastQueued is the end of the last queued span (the run's start when
// nothing was ever seen queued).
func (w watchedRun) lastQueued() time.Time {
	ivs := w.queuedSpans()
	if len(ivs) == 0 {
		return w.published
	}
	return ivs[len(ivs)-1].To
}

func (w watchedRun) probes() int {
	n := 0
	for _, c := range w.calls {
		if c.probe() {
			n++
		}
	}
	return n
}

// prodFaults: the faults scenario's run (its simulator, think-time and
// 10 % mixed faults) with the worker's production back-off — no
// QFETCH_WORKER_MAX_BACKOFF, no QFETCH_WORKER_PROBE_EVERY: the first retry
// waits 15–30 s, the cap is 2 m, the fleet probes every 30 s — at each C
// of ProdFaultCases, clean and faulty interleaved on one seed per rep.
// It measures two things:
//
//   - the whole-run ratio, clean wall time over faulty (publish to run
//     complete): it includes the tail in which only retries in back-off
//     remain, idle by design, so with seconds-long batches it mostly
//     measures the first back-off, not the fleet;
//   - the fleet's utilisation while work is queued (queuedSpans): busy
//     call-time at the simulator / (C × the queued time). A batch waiting
//     out its back-off must not hold a slot while others are queued.
func (h *harness) prodFaults(ctx context.Context) error {
	spec := h.o.spec
	for _, fc := range spec.ProdFaultCases {
		if err := h.prodFaultsC(ctx, fc); err != nil {
			return err
		}
	}
	h.rep.note("faultsprod: production back-off (QFETCH_WORKER_MAX_BACKOFF and QFETCH_WORKER_PROBE_EVERY unset: first retry 15–30 s, doubling, cap 2 m; probe every 30 s); simulator think %v, a stall pauses the body %v; utilisation = busy detection call-time (each call from request to handler return, failed calls and probes included) inside the spans where the work queue held a batch ready for delivery (consumer NumPending > 0, sampled every %v; batches waiting out a back-off as a schedule are not queued) / (C × those spans)",
		spec.Think, spec.FaultStall, queueTick)
	return nil
}

func (h *harness) prodFaultsC(ctx context.Context, fc fleetCase) error {
	spec := h.o.spec
	n := fc.C * spec.ProdFaultRounds
	size := fmt.Sprintf("%d × %d hosts", n, spec.FaultBatchHosts)
	shape := fmt.Sprintf("C=%d W×S=%d×%d", fc.C, fc.W, fc.S)
	clean := &row{Scenario: "faultsprod", Case: shape + " clean", Size: size}
	faulty := &row{Scenario: "faultsprod", Case: shape + " 10 % faults", Size: size}
	var utils [2][]float64
	var notes []string
	for i := range h.o.reps {
		seed := uint64(i + 1)
		cfg := sweepConfig(int64(n*spec.FaultBatchHosts), spec.Think)
		cfg.Seed = seed
		cfg.ConcurrencyLimit = fc.C
		f, err := h.startFleet(ctx, fmt.Sprintf("faultsprod-c%d-%d", fc.C, seed), cfg)
		if err != nil {
			return err
		}
		err = func() error {
			defer f.stop()
			if err := f.setWorkers(ctx, fc.W, fc.S, fc.C); err != nil {
				return err
			}
			batches := split(f.sim.ids(n*spec.FaultBatchHosts), spec.FaultBatchHosts)
			for j, x := range []*row{clean, faulty} {
				fs := qualysim.Faults{StallFor: spec.FaultStall}
				if x == faulty {
					fs.Prob = qualysim.Spread(0.1)
				}
				if err := f.sim.sim.SetFaults(fs); err != nil {
					return err
				}
				// Rounds of calls, plus a retry chain at the cap for the
				// unlucky: 15–30 s, 30–60 s, 1–2 m, 2 m…
				limit := 10*time.Minute + time.Duration(spec.ProdFaultRounds)*(spec.Think.of(spec.FaultBatchHosts)+spec.FaultStall)
				w, err := f.watchRun(ctx, "faultsprod", batches, limit, nil)
				if err != nil {
					return err
				}
				if w.state != ledger.RunComplete {
					return fmt.Errorf("run %s ended %s with %d dead letters", w.id, w.state, w.dead)
				}
				w.dumpCalls(time.Time{}, time.Time{})
				u, qs := w.queuedUtil(fc.C)
				utils[j] = append(utils[j], u)
				tail := w.published.Add(w.wall).Sub(w.lastQueued()).Seconds()
				retries := float64(w.stats.Requests-int64(w.probes())-int64(n)) / float64(n)
				progress("faultsprod %s seed %d (%d/%d): %.2f s, utilisation while queued %.3f over %.2f s, tail %.2f s, %d calls (%d probes), %v",
					x.Case, seed, i+1, h.o.reps, w.wall.Seconds(), u, qs, tail, len(w.calls), w.probes(), w.stats.Outcomes)
				notes = append(notes, fmt.Sprintf("%s seed %d: %.2f s, queued %.2f s at %.3f, tail %.2f s (last queued → complete), %.2f retries/batch, %d probes, %s",
					strings.TrimPrefix(x.Case, shape+" "), seed, w.wall.Seconds(), qs, u, tail, retries, w.probes(), outcomesText(w.stats.Outcomes)))
				// No bytes: the rate column is then batches/s; the answers are
				// small and their bytes say nothing here.
				x.Samples = append(x.Samples, sample{Seconds: w.wall.Seconds(), Wall: w.wall.Seconds(), Batches: n})
				if x == faulty {
					x.RetriesPerBatch = retries
				}
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	clean.derive()
	faulty.derive()
	faulty.against(clean)
	for j, x := range []*row{clean, faulty} {
		x.QueuedUtil = median(utils[j])
		x.Target = fmt.Sprintf("utilisation while queued %.3f (≥ 0.95)", x.QueuedUtil)
		x.Verdict = verdict(x.QueuedUtil >= 0.95)
	}
	h.rep.add(clean)
	h.rep.add(faulty)
	h.rep.note("faultsprod %s: %s", shape, strings.Join(notes, "; "))
	return nil
}

func outcomesText(o map[string]int64) string {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, o[k]))
	}
	return strings.Join(parts, ", ")
}

// outage: OutageWorkers single-slot worker processes, cap C=2, on the
// faults scenario's simulator without random faults. Once OutageAfter
// batches are stored, every detection call answers 503 for OutageFor
// (Sim.Outage), then the simulator recovers. Counted: dead letters (target
// 0: an outage is charged to no batch, I6), the detection calls that
// started during the outage and how many were probes (no ids; target one
// per QFETCH_WORKER_PROBE_EVERY for the fleet, not per pod), and from the
// outage's end the first batch stored and the first instant C calls run.
func (h *harness) outage(ctx context.Context) error {
	spec := h.o.spec
	const C, W = 2, 6
	n := spec.OutageBatches
	x := &row{Scenario: "outage", Case: fmt.Sprintf("%v 503 on detection, C=%d W×S=%d×1", spec.OutageFor, C, W),
		Size: fmt.Sprintf("%d × %d hosts", n, spec.FaultBatchHosts)}
	var notes []string
	ok := true
	for i := range h.o.reps {
		seed := uint64(i + 1)
		cfg := sweepConfig(int64(n*spec.FaultBatchHosts), spec.Think)
		cfg.Seed = seed
		cfg.ConcurrencyLimit = C
		f, err := h.startFleet(ctx, fmt.Sprintf("outage-%d", seed), cfg)
		if err != nil {
			return err
		}
		err = func() error {
			defer f.stop()
			f.env = []string{"QFETCH_WORKER_PROBE_EVERY=" + spec.OutageProbeEvery.String()}
			if err := f.setWorkers(ctx, W, 1, C); err != nil {
				return err
			}
			batches := split(f.sim.ids(n*spec.FaultBatchHosts), spec.FaultBatchHosts)
			var began, ended time.Time
			var end func()
			defer func() {
				if end != nil {
					end()
				}
			}()
			tick := func(run string, _ queueSample) error {
				switch {
				case began.IsZero():
					// Until the outage: count the stored batches.
					done, err := f.q.DoneBatches(ctx, run)
					if err != nil || len(done) < spec.OutageAfter {
						return err
					}
					began = time.Now()
					end = f.sim.sim.Outage(qualysim.Detection, qualysim.Fault503)
					progress("outage: began after %d batches stored", len(done))
				case ended.IsZero() && time.Since(began) >= spec.OutageFor:
					end()
					ended = time.Now()
					progress("outage: ended after %.1f s", ended.Sub(began).Seconds())
				}
				return nil
			}
			limit := 10*time.Minute + spec.OutageFor
			w, err := f.watchRun(ctx, "outage", batches, limit, tick)
			if err != nil {
				return err
			}
			if ended.IsZero() {
				return fmt.Errorf("run %s ended before the outage did (began %v)", w.id, began)
			}
			w.dumpCalls(began, ended)
			var during, probes, charged int
			for _, c := range w.calls {
				if !c.Start.Before(began) && c.Start.Before(ended) {
					during++
					if c.probe() {
						probes++
					} else {
						charged++
					}
				}
			}
			var firstStored time.Time
			for _, d := range w.done {
				if d.At.After(ended) && (firstStored.IsZero() || d.At.Before(firstStored)) {
					firstStored = d.At
				}
			}
			full, fullOK := firstAtLeast(w.calls, ended, C)
			outFor := ended.Sub(began)
			maxProbes := int(math.Ceil(outFor.Seconds()/spec.OutageProbeEvery.Seconds())) + 1
			toStored, toFull := since(firstStored, ended), since(full, ended)
			if !fullOK {
				toFull = -1
			}
			progress("outage seed %d (%d/%d): %.2f s, %d dead letters, %d calls during %.1f s outage (%d probes, %d batch calls), first batch stored %.2f s after, %d calls again %.2f s after, state %s, %v",
				seed, i+1, h.o.reps, w.wall.Seconds(), w.dead, during, outFor.Seconds(), probes, charged, toStored, C, toFull, w.state, w.stats.Outcomes)
			notes = append(notes, fmt.Sprintf("seed %d: run %.2f s (%s), %d stored, %d dead letters; outage %.1f s from %.2f s into the run: %d detection calls started in it, %d of them probes (≤ %d allowed: one per %v for the fleet), %d batch calls (the breaker's first failures); after its end the first batch stored at +%.2f s, %d calls running again at +%.2f s; %d detection calls in all (%s)",
				seed, w.wall.Seconds(), w.state, len(w.done), w.dead, outFor.Seconds(), began.Sub(w.published).Seconds(),
				during, probes, maxProbes, spec.OutageProbeEvery, charged, toStored, C, toFull, len(w.calls), outcomesText(w.stats.Outcomes)))
			ok = ok && w.dead == 0 && probes <= maxProbes
			x.Samples = append(x.Samples, sample{Seconds: w.wall.Seconds(), Wall: w.wall.Seconds(), Batches: n})
			x.OutageProbes, x.DeadLetters = probes, w.dead
			x.Recovery = toFull
			return nil
		}()
		if err != nil {
			return err
		}
	}
	x.derive()
	x.Target = fmt.Sprintf("0 dead letters, one probe per %v for the fleet", spec.OutageProbeEvery)
	x.Verdict = verdict(ok)
	h.rep.add(x)
	h.rep.note("outage: %d worker processes × 1 slot, QFETCH_MAX_IN_FLIGHT=%d, QFETCH_WORKER_PROBE_EVERY=%v (production 30 s; shorter so that one probe per period for the fleet and one per pod differ by %d× within the outage), back-off as in production; simulator think %v, no random faults; %s",
		W, C, spec.OutageProbeEvery, W, spec.Think, strings.Join(notes, "; "))
	return nil
}

// dumpCalls writes the run's detection calls and queued spans to stderr
// under -v, in seconds from the publish, and the given marks.
func (w watchedRun) dumpCalls(marks ...time.Time) {
	if !verbose {
		return
	}
	at := func(t time.Time) float64 { return t.Sub(w.published).Seconds() }
	for _, c := range w.calls {
		fmt.Fprintf(os.Stderr, "bench: call %8.3f %8.3f status %d probe %v ids %.24s\n", at(c.Start), at(c.End), c.Status, c.probe(), c.IDs)
	}
	for _, iv := range w.queuedSpans() {
		fmt.Fprintf(os.Stderr, "bench: queued %8.3f %8.3f\n", at(iv.From), at(iv.To))
	}
	for _, m := range marks {
		if !m.IsZero() {
			fmt.Fprintf(os.Stderr, "bench: mark %8.3f\n", at(m))
		}
	}
	fmt.Fprintf(os.Stderr, "bench: run %s ended %8.3f\n", w.id, w.wall.Seconds())
}

// since is t − from in seconds, or -1 when t is zero.
func since(t, from time.Time) float64 {
	if t.IsZero() {
		return -1
	}
	return t.Sub(from).Seconds()
}
