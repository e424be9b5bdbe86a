package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// sample is one repetition of one case.
type sample struct {
	// Seconds is the measured interval: the worker's own batch duration
	// (pull to recorded), a child's request-to-stored time, or a planner
	// process's life.
	Seconds    float64 `json:"seconds"`
	Bytes      int64   `json:"bytes,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
	// Wall is what the harness saw around it (worker: publish to run
	// complete, manifest included).
	Wall       float64 `json:"wall_seconds,omitempty"`
	FirstBatch float64 `json:"first_batch_seconds,omitempty"`
	Batches    int     `json:"batches,omitempty"`
	Hosts      int     `json:"hosts,omitempty"`
	// CPU the other parts used over the same interval: MinIO, NATS, and
	// this process (the simulator serving, the harness polling).
	MinIOCPU   float64 `json:"minio_cpu_seconds"`
	NATSCPU    float64 `json:"nats_cpu_seconds"`
	HarnessCPU float64 `json:"harness_cpu_seconds"`
	// HostListBytes is what a planner stored of the Host List: its pages' bytes.
	HostListBytes int64 `json:"hostlist_bytes,omitempty"`
}

// row is one case: its samples and what is derived from them.
type row struct {
	Scenario string   `json:"scenario"`
	Case     string   `json:"case"`
	Size     string   `json:"size"`
	Samples  []sample `json:"samples"`

	SecondsMin    float64 `json:"seconds_min"`
	SecondsMed    float64 `json:"seconds_median"`
	Rate          float64 `json:"rate_median"`
	RateUnit      string  `json:"rate_unit"`
	CPU           float64 `json:"cpu_median"`
	CPUUnit       string  `json:"cpu_unit"`
	RSSMed        int64   `json:"peak_rss_median_bytes"`
	RSSMax        int64   `json:"peak_rss_max_bytes"`
	FirstBatchMed float64 `json:"first_batch_median_seconds,omitempty"`
	// Ratio is this case's throughput over its baseline's, from medians;
	// RatioBest from the best (min) times.
	// The others' CPU, in CPUUnit: MinIO, NATS, simulator + harness.
	MinIOCPU   float64 `json:"minio_cpu_median"`
	NATSCPU    float64 `json:"nats_cpu_median"`
	HarnessCPU float64 `json:"harness_cpu_median"`
	Ratio      float64 `json:"ratio_median,omitempty"`
	RatioBest  float64 `json:"ratio_best,omitempty"`
	// RetriesPerBatch: detection calls beyond one per batch, median (faults).
	RetriesPerBatch float64 `json:"retries_per_batch,omitempty"`
	// QueuedUtil: the fleet's utilisation while work was queued, median
	// (faultsprod).
	QueuedUtil float64 `json:"queued_utilisation,omitempty"`
	// The outage scenario's last rep: probes during the outage, the run's
	// dead letters, seconds from the outage's end until C calls ran again.
	OutageProbes int     `json:"outage_probes,omitempty"`
	DeadLetters  int     `json:"dead_letters,omitempty"`
	Recovery     float64 `json:"recovery_seconds,omitempty"`
	Target       string  `json:"target,omitempty"`
	Verdict      string  `json:"verdict,omitempty"` // ok, MISS, or empty when there is no target
}

type report struct {
	Command  string    `json:"command"`
	Size     string    `json:"size"`
	Reps     int       `json:"reps"`
	Machine  string    `json:"machine"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Rows     []*row    `json:"rows"`
	Notes    []string  `json:"notes,omitempty"`
	Control  []cpRow   `json:"controlplane,omitempty"`
	Sub      []subRow  `json:"subscription,omitempty"`
	Summary  string    `json:"summary"`
}

func newReport(o options) *report {
	return &report{
		Command: "go run ./bench " + strings.Join(os.Args[1:], " "),
		Size:    o.size, Reps: o.reps, Machine: machine(), Started: time.Now().UTC(),
	}
}

func (r *report) add(x *row) { r.Rows = append(r.Rows, x) }

func (r *report) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, n)
	progress("note: %s", n)
}

func (r *report) find(scenario, cs string) *row {
	for _, x := range r.Rows {
		if x.Scenario == scenario && x.Case == cs {
			return x
		}
	}
	return nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func each(ss []sample, f func(sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

// derive fills the common statistics of x from its samples.
func (x *row) derive() {
	secs := each(x.Samples, func(s sample) float64 { return s.Seconds })
	x.SecondsMin, x.SecondsMed = slices.Min(secs), median(secs)
	rss := each(x.Samples, func(s sample) float64 { return float64(s.PeakRSS) })
	x.RSSMed, x.RSSMax = int64(median(rss)), int64(slices.Max(rss))
	if x.Samples[0].Bytes > 0 {
		x.Rate = median(each(x.Samples, func(s sample) float64 { return float64(s.Bytes) / mib / s.Seconds }))
		x.RateUnit = "MiB/s"
		perGiB := func(f func(sample) float64) float64 {
			return median(each(x.Samples, func(s sample) float64 { return f(s) / (float64(s.Bytes) / gib) }))
		}
		x.CPU = perGiB(func(s sample) float64 { return s.CPUSeconds })
		x.MinIOCPU = perGiB(func(s sample) float64 { return s.MinIOCPU })
		x.NATSCPU = perGiB(func(s sample) float64 { return s.NATSCPU })
		x.HarnessCPU = perGiB(func(s sample) float64 { return s.HarnessCPU })
		x.CPUUnit = "s/GiB"
		return
	}
	x.Rate = median(each(x.Samples, func(s sample) float64 { return float64(s.Batches) / s.Seconds }))
	x.RateUnit = "batches/s"
	x.CPU = median(each(x.Samples, func(s sample) float64 { return s.CPUSeconds }))
	x.MinIOCPU = median(each(x.Samples, func(s sample) float64 { return s.MinIOCPU }))
	x.NATSCPU = median(each(x.Samples, func(s sample) float64 { return s.NATSCPU }))
	x.HarnessCPU = median(each(x.Samples, func(s sample) float64 { return s.HarnessCPU }))
	x.CPUUnit = "s"
	x.FirstBatchMed = median(each(x.Samples, func(s sample) float64 { return s.FirstBatch }))
}

// against sets x's throughput ratio to base (same bytes each: time ratio).
func (x *row) against(base *row) {
	x.Ratio = base.SecondsMed / x.SecondsMed
	x.RatioBest = base.SecondsMin / x.SecondsMin
}

func (x *row) rssTarget() {
	x.Target = fmt.Sprintf("peak RSS ≤ %d MiB", rssTarget/mib)
	x.Verdict = verdict(x.RSSMax <= rssTarget)
}

func verdict(ok bool) string {
	if ok {
		return "ok"
	}
	return "MISS"
}

func sizeText(n int64) string {
	if n >= gib {
		return fmt.Sprintf("%.2f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/mib)
}

func hostsText(n int64) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM hosts", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk hosts", n/1000)
	}
	return fmt.Sprintf("%d hosts", n)
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n`%s` — %s, %d reps, %s\n\n", r.Command, r.Size, r.Reps, r.Machine)
	fmt.Fprintln(w, "| scenario | case | size | n | time min / med (s) | rate (med) | CPU (med) | CPU MinIO / NATS / sim+harness | peak RSS MiB med / max | first batch (s, med) | vs baseline med / best | target |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, x := range r.Rows {
		first, ratio, target := "", "", ""
		if x.FirstBatchMed > 0 {
			first = fmt.Sprintf("%.2f", x.FirstBatchMed)
		}
		if x.Ratio > 0 {
			ratio = fmt.Sprintf("%.3f / %.3f", x.Ratio, x.RatioBest)
		}
		if x.Target != "" {
			target = strings.TrimSpace(x.Target + " " + x.Verdict)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %d | %.2f / %.2f | %.1f %s | %.2f %s | %.2f / %.2f / %.2f | %.1f / %.1f | %s | %s | %s |\n",
			x.Scenario, x.Case, x.Size, len(x.Samples), x.SecondsMin, x.SecondsMed, x.Rate, x.RateUnit,
			x.CPU, x.CPUUnit, x.MinIOCPU, x.NATSCPU, x.HarnessCPU,
			float64(x.RSSMed)/mib, float64(x.RSSMax)/mib, first, ratio, target)
	}
	r.printScale(w)
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
	r.Summary = r.summary()
	fmt.Fprintln(w)
	fmt.Fprintln(w, r.Summary)
}

func (r *report) summary() string {
	parts := []string{"size=" + r.Size}
	if w, b := r.find("pipeline", "worker"), r.find("pipeline", "raw io.Copy"); w != nil && b != nil {
		parts = append(parts, fmt.Sprintf("pipeline %s: worker/raw throughput %.3f (best %.3f, target ≥ %.2f %s), CPU %.2f vs %.2f s/GiB",
			w.Size, w.Ratio, w.RatioBest, pipelineRatio, w.Verdict, w.CPU, b.CPU))
	}
	if w, b := r.find("memory", "worker"), r.find("memory", "naive ReadAll"); w != nil && b != nil {
		parts = append(parts, fmt.Sprintf("memory %s: worker peak RSS %.1f MiB (%s) vs naive %.0f MiB",
			w.Size, float64(w.RSSMax)/mib, w.Verdict, float64(b.RSSMax)/mib))
	}
	for _, x := range r.Rows {
		if x.Scenario == "planner" {
			parts = append(parts, fmt.Sprintf("planner %s: %.1f s, %.0f batches/s, RSS %.1f MiB (%s), first batch %.2f s",
				x.Size, x.SecondsMed, x.Rate, float64(x.RSSMax)/mib, x.Verdict, x.FirstBatchMed))
		}
	}
	var fleet, sweep []string
	for _, x := range r.Rows {
		switch x.Scenario {
		case "fleet":
			v := ""
			if x.Verdict != "" {
				v = " " + x.Verdict
			}
			fleet = append(fleet, fmt.Sprintf("%s %.3f%s", x.Case, x.Ratio, v))
		case "sweep":
			sweep = append(sweep, fmt.Sprintf("%s %.1f s", strings.TrimPrefix(x.Case, "batch "), x.SecondsMed))
		}
	}
	if len(fleet) > 0 {
		parts = append(parts, "fleet utilisation: "+strings.Join(fleet, ", "))
	}
	if len(sweep) > 0 {
		parts = append(parts, "batch sweep: "+strings.Join(sweep, ", "))
	}
	if x := r.find("faults", "10 % faults"); x != nil {
		parts = append(parts, fmt.Sprintf("fault tax: throughput %.3f × clean, %.2f retries per batch", x.Ratio, x.RetriesPerBatch))
	}
	var prod []string
	for _, x := range r.Rows {
		if x.Scenario == "faultsprod" {
			s := fmt.Sprintf("%s utilisation while queued %.3f %s", x.Case, x.QueuedUtil, x.Verdict)
			if x.Ratio > 0 {
				s += fmt.Sprintf(", whole run %.3f × clean", x.Ratio)
			}
			prod = append(prod, s)
		}
	}
	if len(prod) > 0 {
		parts = append(parts, "fault tax, production back-off: "+strings.Join(prod, ", "))
	}
	for _, x := range r.Rows {
		if x.Scenario == "outage" {
			parts = append(parts, fmt.Sprintf("outage %s: %d dead letters, %d probes during it, C calls again %.2f s after its end (%s)",
				x.Case, x.DeadLetters, x.OutageProbes, x.Recovery, x.Verdict))
		}
	}
	return "summary: " + strings.Join(parts, "; ")
}
