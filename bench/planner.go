package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/nats-io/nats.go"

	"github.com/qfetch/qfetch/internal/msg"
)

// plannerScale runs cmd/planner over a subscription of hosts hosts (Host
// List page 100000, batch 1000): wall time, batches/s, peak RSS (target
// ≤ 64 MiB) and the time from exec to the first batch on qfetch.batch.>.
// Each rep has a NATS server of its own: a second planner on the same
// queue would rightly refuse while the first run is still queued.
func (h *harness) plannerScale(ctx context.Context, hosts int64) error {
	sim, err := serveSim(simConfig(hosts))
	if err != nil {
		return err
	}
	defer sim.stop()
	r := &row{Scenario: "planner", Case: "cmd/planner", Size: hostsText(hosts)}
	for i := range h.o.reps {
		s, err := h.plannerRep(ctx, sim, fmt.Sprintf("%d-%d", hosts, i))
		if err != nil {
			return err
		}
		progress("planner %s %d/%d: %.2f s, %d batches, %d hosts, first batch %.2f s, CPU %.2f s, RSS %.1f MiB",
			hostsText(hosts), i+1, h.o.reps, s.Seconds, s.Batches, s.Hosts, s.FirstBatch, s.CPUSeconds, float64(s.PeakRSS)/mib)
		r.Samples = append(r.Samples, s)
	}
	r.derive()
	r.rssTarget()
	h.rep.add(r)
	return nil
}

// plannerRep runs the planner once; extra are more QFETCH_* settings.
func (h *harness) plannerRep(ctx context.Context, sim *simServer, tag string, extra ...string) (_ sample, err error) {
	dir := filepath.Join(h.tmp, "nats-planner-"+tag)
	n, err := startNATS(ctx, h.natsBin, dir)
	if err != nil {
		return sample{}, err
	}
	defer func() {
		if serr := n.stop(); serr != nil && err == nil {
			err = serr
		}
		_ = os.RemoveAll(dir)
	}()
	nc, err := nats.Connect(n.URL, nats.Name("qfetch-bench"))
	if err != nil {
		return sample{}, err
	}
	defer nc.Close()

	// Batches are seen as they are published: a plain subscription on the
	// stream's subjects gets every publish, acknowledged or not.
	var mu sync.Mutex
	var first time.Time
	var seen int
	sub, err := nc.Subscribe(msg.BatchSubject(">"), func(*nats.Msg) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if seen == 0 {
			first = now
		}
		seen++
	})
	if err != nil {
		return sample{}, err
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		return sample{}, err
	}

	env := h.qfetchEnv(sim, n.URL, append([]string{
		"QFETCH_BATCH_SIZE=" + strconv.Itoa(plannerBatch),
		"QFETCH_QUALYS_HOSTLIST_PAGE_SIZE=" + strconv.Itoa(plannerPage)}, extra...)...)
	others := cpuSince(h.s3.pid(), n.pid())
	start := time.Now()
	p, err := startProc("planner", h.planner, nil, env, h.secrets(sim))
	if err != nil {
		return sample{}, err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		_ = p.stop()
		return sample{}, ctx.Err()
	}
	wall := time.Since(start)
	minioCPU, natsCPU, harnessCPU := others()
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return sample{}, fmt.Errorf("planner exited %d:\n%s", code, p.out)
	}
	ru := p.rusage()

	_, _, q, err := connectQueueOn(ctx, nc)
	if err != nil {
		return sample{}, err
	}
	runs, err := q.RunIDs(ctx)
	if err != nil || len(runs) != 1 {
		return sample{}, fmt.Errorf("want one run, got %v (%v)", runs, err)
	}
	rec, err := q.GetRun(ctx, runs[0])
	if err != nil {
		return sample{}, err
	}
	if !rec.PlanningComplete {
		return sample{}, fmt.Errorf("run %s: planning not complete (state %s)", rec.ID, rec.State)
	}
	err = poll(ctx, 10*time.Second, 10*time.Millisecond, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return seen >= rec.BatchesPlanned, nil
	})
	if err != nil {
		return sample{}, fmt.Errorf("saw %d of %d batches published: %w", seen, rec.BatchesPlanned, err)
	}
	pages, err := q.Pages(ctx, rec.ID)
	if err != nil {
		return sample{}, err
	}
	var pageBytes int64
	for _, p := range pages {
		pageBytes += p.Bytes
	}
	if err := h.removePrefix(ctx, "qualys/runs/"+rec.ID+"/"); err != nil {
		return sample{}, err
	}
	mu.Lock()
	defer mu.Unlock()
	return sample{
		Seconds: wall.Seconds(), CPUSeconds: rusageCPU(ru).Seconds(), PeakRSS: rusageMaxRSS(ru),
		FirstBatch: first.Sub(start).Seconds(), Batches: rec.BatchesPlanned, Hosts: rec.HostsPlanned,
		MinIOCPU: minioCPU, NATSCPU: natsCPU, HarnessCPU: harnessCPU, HostListBytes: pageBytes,
	}, nil
}

// removePrefix deletes the objects under prefix (the Host List pages a
// planner teed), so that big runs do not fill the disk.
func (h *harness) removePrefix(ctx context.Context, prefix string) error {
	objs := h.s3.Client.ListObjects(ctx, h.s3.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	for e := range h.s3.Client.RemoveObjects(ctx, h.s3.Bucket, objs, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return e.Err
		}
	}
	return nil
}
