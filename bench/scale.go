package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// cpRow is one control-plane run: a planned run of tiny batches through
// W×S workers on one kind of server.
type cpRow struct {
	Server    string    `json:"server"`
	Shape     string    `json:"shape"`
	Drain     bool      `json:"drain"` // workers started once the run was wholly queued
	BatchSize int       `json:"batch_size"`
	Load      string    `json:"load_average"`
	Result    runResult `json:"result"`
}

// subRow is one whole subscription, planner to _SUCCESS.
type subRow struct {
	Server string    `json:"server"`
	Shape  string    `json:"shape"`
	Load   string    `json:"load_average"`
	Result runResult `json:"result"`
}

// controlPlane: the control plane alone. The simulator answers at once
// with tiny answers and no cap; cmd/planner plans Batches batches of
// BatchHosts hosts and W×S workers fetch them, on one nats-server and on
// a three-node cluster at R3. One run per shape, each in a fresh world.
func (h *harness) controlPlane(ctx context.Context) error {
	spec := h.o.spec
	hosts := int64(spec.ControlBatches * spec.ControlBatchHosts)
	type cpCase struct {
		sh    shape
		drain bool
	}
	var cases []cpCase
	for _, sh := range spec.ControlShapes {
		cases = append(cases, cpCase{sh, false})
	}
	for _, sh := range spec.DrainShapes {
		cases = append(cases, cpCase{sh, true})
	}
	for _, kind := range []string{serverSingle, serverCluster} {
		for _, c := range cases {
			sh := c.sh
			name := fmt.Sprintf("cp-%s-%dx%d", strings.Fields(kind)[0], sh.W, sh.S)
			if c.drain {
				name += "-drain"
			}
			progress("%s: %s, %d batches of %d hosts, W×S %s", name, kind, spec.ControlBatches, spec.ControlBatchHosts, sh)
			limit := 2*time.Minute + time.Duration(spec.ControlBatches)*time.Second
			r, err := h.oneRun(ctx, kind, name, hosts, spec.ControlBatchHosts, sh, limit, c.drain)
			if errors.Is(err, errNoCluster) {
				h.rep.note("controlplane: no cluster rows: %v", err)
				break
			}
			if err != nil {
				return err
			}
			x := cpRow{Server: kind, Shape: sh.String(), Drain: c.drain, BatchSize: spec.ControlBatchHosts, Load: loadAvg(), Result: r}
			progress("%s: %d batches in %.2f s (%.1f batches/s planner→complete, %.1f first→last ack), load %s; ops/batch %s; CPU ms/batch %s",
				name, r.Batches, r.Wall, float64(r.Batches)/r.Wall, float64(r.Batches)/r.AckSpan, x.Load, opsText(r), cpuText(r))
			h.rep.Control = append(h.rep.Control, x)
		}
	}
	return nil
}

// subscription: a whole simulated subscription of SubHosts tiny hosts,
// cmd/planner to _SUCCESS through the three-node cluster (one server when
// the cluster is unavailable, said in a note).
func (h *harness) subscription(ctx context.Context) error {
	spec := h.o.spec
	sh := spec.SubShape
	batches := int((spec.SubHosts + int64(spec.SubBatchHosts) - 1) / int64(spec.SubBatchHosts))
	limit := 5*time.Minute + time.Duration(batches)*time.Second
	for _, kind := range []string{serverCluster, serverSingle} {
		name := fmt.Sprintf("sub-%s", strings.Fields(kind)[0])
		progress("%s: %s, %s in batches of %d, W×S %s", name, kind, hostsText(spec.SubHosts), spec.SubBatchHosts, sh)
		r, err := h.oneRun(ctx, kind, name, spec.SubHosts, spec.SubBatchHosts, sh, limit, false)
		if errors.Is(err, errNoCluster) {
			h.rep.note("subscription: the cluster is unavailable (%v): measured on one server instead", err)
			continue
		}
		if err != nil {
			return err
		}
		x := subRow{Server: kind, Shape: sh.String(), Load: loadAvg(), Result: r}
		progress("%s: %d batches, %d hosts in %.1f s; manifest %s built in %.2f s by %s; NATS store %s, RSS %s; ops/batch %s; CPU ms/batch %s",
			name, r.Batches, r.Hosts, r.Wall, sizeText(r.Manifest), r.Finish, r.Finisher, sizeText(r.StoreBytes), sizeText(r.NATSRSS), opsText(r), cpuText(r))
		h.rep.Sub = append(h.rep.Sub, x)
		return nil
	}
	return nil
}

// oneRun runs one planned run in a fresh world and removes what it stored.
func (h *harness) oneRun(ctx context.Context, kind, name string, hosts int64, batch int, sh shape, limit time.Duration, drain bool) (runResult, error) {
	w, err := h.startWorld(ctx, kind, name, hosts)
	if err != nil {
		return runResult{}, err
	}
	defer w.stop()
	if !drain {
		if err := w.startWorkers(ctx, sh, false); err != nil {
			return runResult{}, err
		}
	}
	r, err := w.planAndWait(ctx, batch, limit, drain, sh)
	if err != nil {
		return r, err
	}
	if r.Tap.Dropped > 0 || r.Tap.Ops[opPublish] != int64(r.Batches) {
		h.rep.note("%s: the tap dropped %d messages and counted %d publishes for %d batches: its counts are low", name, r.Tap.Dropped, r.Tap.Ops[opPublish], r.Batches)
	}
	// The finisher's peak against the other workers': what completion adds.
	var others []int64
	for n, v := range r.WorkerRSS {
		if n != r.Finisher {
			others = append(others, v)
		}
	}
	if fin, ok := r.WorkerRSS[r.Finisher]; ok && len(others) > 0 {
		h.rep.note("%s: finisher %s peak RSS %.1f MiB, the other workers' %.1f–%.1f MiB", name, r.Finisher,
			float64(fin)/mib, float64(slices.Min(others))/mib, float64(slices.Max(others))/mib)
	}
	h.rep.note("%s: NATS ops per batch in detail: %s; tap saw %d messages (inbox replies included), dropped %d",
		name, r.Tap.topDetail(12, r.Batches), r.Tap.Seen, r.Tap.Dropped)
	return r, h.removePrefix(ctx, "qualys/runs/"+r.Run+"/")
}

func perBatch(n int64, batches int) float64 { return float64(n) / float64(batches) }

func opsText(r runResult) string {
	var parts []string
	for _, k := range opKinds {
		if v := r.Tap.Ops[k]; v > 0 {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, perBatch(v, r.Batches)))
		}
	}
	return strings.Join(parts, ", ")
}

func cpuText(r runResult) string {
	var parts []string
	for _, k := range cpuKinds {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, 1000*r.CPU[k]/float64(r.Batches)))
	}
	return strings.Join(parts, ", ")
}

func (r *report) printScale(w io.Writer) {
	if len(r.Control) > 0 {
		fmt.Fprintln(w, "\nControl plane (tiny answers, no cap; one run per row; rate A = planner start → run complete, B = first → last +ACK seen by the tap; a drain row starts its workers once the planner has queued the whole run, and its B is workers started → run complete; planner s = the planner process's life):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| server | W×S | batches × hosts | planner s | wall s | batches/s A / B | publish | fetch | ack | wpi | nak | term | KV write | KV read | other API | table job | delivered | CPU ms/batch nats / workers / planner / sim / MinIO / harness | load |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, x := range r.Control {
			res := x.Result
			shapeText, b := x.Shape, float64(res.Batches)/res.AckSpan
			if x.Drain {
				shapeText, b = x.Shape+" drain", float64(res.Batches)/res.Drain
			}
			fmt.Fprintf(w, "| %s | %s | %d × %d | %.1f | %.1f | %.1f / %.1f | %s | %s | %.1f |\n", x.Server, shapeText, res.Batches, x.BatchSize,
				res.PlannerRun, res.Wall, float64(res.Batches)/res.Wall, b, opsCells(res), cpuCells(res), loadFirst(x.Load))
		}
	}
	if len(r.Sub) > 0 {
		fmt.Fprintln(w, "\nWhole subscription, planner → _SUCCESS (tiny answers, no cap):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| server | hosts | batches | W×S | wall s | batches/s | planner s / peak RSS MiB | worker peak RSS MiB (max) | finisher RSS MiB | NATS store MiB | NATS RSS MiB now / peak | manifest | manifest built s | CPU s nats / workers / planner / sim / MinIO | load |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, x := range r.Sub {
			res := x.Result
			var maxW int64
			for _, v := range res.WorkerRSS {
				maxW = max(maxW, v)
			}
			fmt.Fprintf(w, "| %s | %s | %d | %s | %.1f | %.1f | %.1f / %.1f | %.1f | %.1f | %.1f | %.1f / %.1f | %s | %.2f | %.1f / %.1f / %.1f / %.1f / %.1f | %s |\n",
				x.Server, hostsText(int64(res.Hosts)), res.Batches, x.Shape, res.Wall, float64(res.Batches)/res.Wall,
				res.PlannerRun, float64(res.PlannerRSS)/mib, float64(maxW)/mib, float64(res.WorkerRSS[res.Finisher])/mib,
				float64(res.StoreBytes)/mib, float64(res.NATSRSS)/mib, float64(res.NATSHWM)/mib, sizeText(res.Manifest), res.Finish,
				res.CPU["nats"], res.CPU["workers"], res.CPU["planner"], res.CPU["sim"], res.CPU["minio"], x.Load)
			fmt.Fprintf(w, "\nops per batch: %s\n", opsText(res))
			var streams []string
			for _, k := range slices.Sorted(maps.Keys(res.StreamBytes)) {
				streams = append(streams, fmt.Sprintf("%s %s", k, sizeText(int64(res.StreamBytes[k]))))
			}
			fmt.Fprintf(w, "\nstreams (one replica): %s\n", strings.Join(streams, ", "))
		}
	}
}

func opsCells(r runResult) string {
	var cells []string
	for _, k := range opKinds[:len(opKinds)-1] {
		cells = append(cells, fmt.Sprintf("%.2f", perBatch(r.Tap.Ops[k], r.Batches)))
	}
	return strings.Join(cells, " | ")
}

func cpuCells(r runResult) string {
	var cells []string
	for _, k := range cpuKinds {
		cells = append(cells, fmt.Sprintf("%.1f", 1000*r.CPU[k]/float64(r.Batches)))
	}
	return strings.Join(cells, " / ")
}

func loadFirst(load string) float64 {
	var f float64
	_, _ = fmt.Sscan(load, &f)
	return f
}
