// Command bench measures qfetch end to end against its real parts (pinned
// nats-server and MinIO, the Qualys simulator, the built planner and worker).
//
//	go run ./bench [-size small|default|big] [-reps 3] [-json out.json] [-scenarios pipeline,memory,planner,hostlist,fleet,sweep,faults,faultsprod,outage] [-cpuprofile f] [-v]
//
// The machine is assumed shared and noisy: each figure is the min and median
// of -reps runs, and each case with a baseline is interleaved with it, rep by
// rep, in the same run. Sizes: small (CI: 64 MiB, 128 MiB, 100k hosts),
// default (1 GiB, 2 GiB, 1M hosts), big (default plus the planner at 10M).
// The sweep and fault scenarios (faults, faultsprod, outage) run on a
// simulator that thinks before each detection answer, per call and per host
// (sizeSpec.Think); faultsprod and outage keep the worker's production
// back-off, so their runs last minutes whatever the size.
//
// Two scenarios run only when named (issue #19): controlplane (cmd/planner,
// W×S workers and tiny instant answers, on one nats-server and on a
// three-node cluster at R3, with a tap counting NATS operations a batch and
// the CPU of each process kind) and subscription10m (10M hosts planner to
// _SUCCESS through the cluster; -size small: 200k).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/qfetch/qfetch/internal/serverproc"
)

// sizeSpec is what one -size runs.
type sizeSpec struct {
	PipelineBytes int64   // scenario pipeline: one response of about this size
	MemoryBytes   int64   // scenario memory
	PlannerHosts  []int64 // scenario planner, one row each

	FleetCases        []fleetCase // scenario fleet; grouped by C, one simulator each
	FleetBatchSeconds int64       // one batch is this many seconds at B
	FleetRounds       int         // batches per run = C × FleetRounds

	SweepHosts int64 // scenario sweep: hosts fetched at each batch size
	SweepSizes []int // batch sizes, one row each
	// The simulator's think-time before a detection answer's first byte:
	// Think.Overhead per call plus Think.PerHost per host asked for. The
	// faults scenario serves the same.
	Think think

	FaultBatches    int // scenario faults: batches per run
	FaultBatchHosts int
	FaultStall      time.Duration // how long a stall fault pauses the body
	// FaultMaxBackoff caps the faults scenario's worker's retry delay
	// (fetch.Config.MaxBackoff; cmd/worker's is 2 m, its base 30 s).
	FaultMaxBackoff time.Duration

	// Scenario faultsprod: the faults scenario's simulator and batch size
	// with the worker's production back-off, at each C (W×S covering it);
	// a run is C × ProdFaultRounds batches.
	ProdFaultCases  []fleetCase
	ProdFaultRounds int

	// Scenario outage: OutageBatches of FaultBatchHosts through six
	// single-slot workers at C=2; after OutageAfter are stored, every
	// detection call answers 503 for OutageFor. OutageProbeEvery is the
	// workers' QFETCH_WORKER_PROBE_EVERY.
	OutageBatches, OutageAfter  int
	OutageFor, OutageProbeEvery time.Duration

	// Scenario controlplane: ControlBatches batches of ControlBatchHosts
	// tiny hosts, planned by cmd/planner, through each shape, on one
	// server and on a three-node cluster at R3.
	ControlBatches, ControlBatchHosts int
	ControlShapes                     []shape
	// DrainShapes run the same with the workers started once the planner
	// has queued the whole run: the workers' side alone.
	DrainShapes []shape
	// Scenario subscription10m: SubHosts tiny hosts in batches of
	// SubBatchHosts, planner to _SUCCESS through the cluster, W×S SubShape.
	SubHosts      int64
	SubBatchHosts int
	SubShape      shape
}

// think is the simulator's per-call and per-host think-time.
type think struct{ Overhead, PerHost time.Duration }

// of is the think-time of a call for n hosts.
func (t think) of(n int) time.Duration { return t.Overhead + time.Duration(n)*t.PerHost }

func (t think) String() string { return fmt.Sprintf("%v + %v/host", t.Overhead, t.PerHost) }

const mibps = 8 << 20 // B: per-connection pace in the fleet scenario

// Think-times: Qualys answers a detection call after it has gathered the
// batch, so a call costs a fixed part and a part per host. The figures are
// scaled down (Qualys' are seconds to minutes) but keep the ratio that
// matters: one call's overhead is worth 500 hosts.
var (
	smallThink   = think{Overhead: 200 * time.Millisecond, PerHost: 400 * time.Microsecond}
	defaultThink = think{Overhead: time.Second, PerHost: 2 * time.Millisecond}
)

var sizes = map[string]sizeSpec{
	"small": {PipelineBytes: 64 << 20, MemoryBytes: 128 << 20, PlannerHosts: []int64{100_000},
		FleetCases: []fleetCase{{C: 2, W: 1, S: 2, B: mibps}}, FleetBatchSeconds: 1, FleetRounds: 1,
		SweepHosts: 1000, SweepSizes: []int{250, 500, 1000}, Think: smallThink,
		FaultBatches: 40, FaultBatchHosts: 10, FaultStall: time.Second, FaultMaxBackoff: 500 * time.Millisecond,
		ProdFaultCases: []fleetCase{{C: 2, W: 1, S: 2}}, ProdFaultRounds: 10,
		OutageBatches: 16, OutageAfter: 4, OutageFor: 10 * time.Second, OutageProbeEvery: 2 * time.Second,
		ControlBatches: 300, ControlBatchHosts: 10, ControlShapes: []shape{{1, 4}, {2, 4}}, DrainShapes: []shape{{2, 4}},
		SubHosts: 200_000, SubBatchHosts: 1000, SubShape: shape{2, 4}},
	"default": {PipelineBytes: 1 << 30, MemoryBytes: 2 << 30, PlannerHosts: []int64{1_000_000},
		FleetCases: defaultFleet, FleetBatchSeconds: 4, FleetRounds: 3,
		SweepHosts: 10_000, SweepSizes: defaultSweep, Think: defaultThink,
		FaultBatches: 40, FaultBatchHosts: 250, FaultStall: 3 * time.Second, FaultMaxBackoff: 2 * time.Second,
		ProdFaultCases: prodFaultCases, ProdFaultRounds: 30,
		OutageBatches: 60, OutageAfter: 6, OutageFor: time.Minute, OutageProbeEvery: 10 * time.Second,
		ControlBatches: 2000, ControlBatchHosts: 10, ControlShapes: controlShapes, DrainShapes: drainShapes,
		SubHosts: 10_000_000, SubBatchHosts: 1000, SubShape: shape{4, 8}},
	"big": {PipelineBytes: 1 << 30, MemoryBytes: 2 << 30, PlannerHosts: []int64{1_000_000, 10_000_000},
		FleetCases: defaultFleet, FleetBatchSeconds: 4, FleetRounds: 5,
		SweepHosts: 20_000, SweepSizes: defaultSweep, Think: defaultThink,
		FaultBatches: 80, FaultBatchHosts: 250, FaultStall: 3 * time.Second, FaultMaxBackoff: 2 * time.Second,
		ProdFaultCases: prodFaultCases, ProdFaultRounds: 60,
		OutageBatches: 60, OutageAfter: 6, OutageFor: time.Minute, OutageProbeEvery: 10 * time.Second,
		ControlBatches: 2000, ControlBatchHosts: 10, ControlShapes: controlShapes, DrainShapes: drainShapes,
		SubHosts: 10_000_000, SubBatchHosts: 1000, SubShape: shape{4, 8}},
}

var (
	// C=10 at 2 MiB/s a call: 20 MiB/s in all, which the 2-core box moves
	// without being the bottleneck.
	defaultFleet = []fleetCase{
		{C: 2, W: 1, S: 1, B: mibps}, {C: 2, W: 1, S: 2, B: mibps}, {C: 2, W: 2, S: 2, B: mibps},
		{C: 10, W: 5, S: 2, B: 2 << 20},
	}
	defaultSweep = []int{500, 1000, 2500, 5000, 10000}
	// W×S = C: every slot the cap allows, none more.
	prodFaultCases = []fleetCase{{C: 2, W: 1, S: 2}, {C: 10, W: 5, S: 2}}
	controlShapes  = []shape{{1, 4}, {2, 4}, {4, 4}, {4, 8}}
	drainShapes    = []shape{{2, 4}, {4, 8}}
)

// Fixed shape of the runs.
const (
	batchHosts   = 1000    // hosts in the detection batch (QFETCH_BATCH_SIZE default)
	plannerBatch = 1000    // QFETCH_BATCH_SIZE for the planner scenario
	plannerPage  = 100_000 // QFETCH_QUALYS_HOSTLIST_PAGE_SIZE
	bucketName   = "qfetch-bench"
	allScenarios = "pipeline,memory,planner,hostlist,fleet,sweep,faults,faultsprod,outage"
	// scaleScenarios run only when named: the control plane and a whole
	// subscription (issue #19).
	scaleScenarios = "controlplane,subscription10m"
	rssTarget      = 64 << 20
	pipelineRatio  = 0.95
)

type options struct {
	size       string
	spec       sizeSpec
	reps       int
	jsonOut    string
	scenarios  []string
	cpuProfile string
	keep       bool
	child      bool
}

func main() {
	var o options
	var scen string
	flag.StringVar(&o.size, "size", "default", "small (CI), default or big (adds the planner at 10M hosts)")
	flag.IntVar(&o.reps, "reps", 3, "repetitions of each measurement (min and median are reported)")
	flag.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&scen, "scenarios", allScenarios, "comma-separated subset of "+allScenarios+","+scaleScenarios+" (default: the first list)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "after the pipeline reps, run the worker path once more in-process and write its CPU profile here")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data, built binaries) for inspection")
	flag.BoolVar(&verbose, "v", false, "copy the children's output (logs, secrets redacted) to stderr, and the faultsprod and outage runs' detection calls and queued spans")
	flag.BoolVar(&o.child, "child", false, "internal: run as one of the harness's child processes (job on stdin)")
	flag.Parse()

	if o.child {
		if err := runChild(); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	spec, ok := sizes[o.size]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: -size must be small, default or big, got %q\n", o.size)
		os.Exit(2)
	}
	o.spec = spec
	if o.reps < 1 {
		fmt.Fprintln(os.Stderr, "bench: -reps must be at least 1")
		os.Exit(2)
	}
	for s := range strings.SplitSeq(scen, ",") {
		if s = strings.TrimSpace(s); !slices.Contains(strings.Split(allScenarios+","+scaleScenarios, ","), s) {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (want a subset of %s,%s)\n", s, allScenarios, scaleScenarios)
			os.Exit(2)
		}
		o.scenarios = append(o.scenarios, s)
	}
	if o.cpuProfile != "" {
		abs, err := filepath.Abs(o.cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
		o.cpuProfile = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// harness holds what the scenarios share.
type harness struct {
	o        options
	root     string // module root
	tmp      string
	self     string // this binary, re-executed for the child processes
	natsBin  string
	minioBin string
	planner  string
	worker   string
	qfetch   string // cmd/qfetch: the simulator as a process of its own
	s3       *minioServer
	rep      *report
}

func run(ctx context.Context, o options) (err error) {
	h := &harness{o: o, rep: newReport(o)}
	if h.root, err = serverproc.ModuleRoot(); err != nil {
		return err
	}
	if h.natsBin, err = serverproc.FindBinary("nats-server"); err != nil {
		return err
	}
	if h.minioBin, err = serverproc.FindBinary("minio"); err != nil {
		return err
	}
	if h.self, err = os.Executable(); err != nil {
		return err
	}
	if h.tmp, err = os.MkdirTemp("", "qfetch-bench-"); err != nil {
		return err
	}
	defer func() {
		if o.keep {
			fmt.Fprintln(os.Stderr, "bench: kept", h.tmp)
			return
		}
		if rerr := os.RemoveAll(h.tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()

	progress("building cmd/planner, cmd/worker and cmd/qfetch")
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(h.tmp, "bin")+"/", "./cmd/planner", "./cmd/worker", "./cmd/qfetch")
	build.Dir = h.root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	h.planner, h.worker = filepath.Join(h.tmp, "bin", "planner"), filepath.Join(h.tmp, "bin", "worker")
	h.qfetch = filepath.Join(h.tmp, "bin", "qfetch")

	progress("starting MinIO")
	if h.s3, err = startMinIO(ctx, h.minioBin, filepath.Join(h.tmp, "minio"), bucketName); err != nil {
		return err
	}
	defer func() {
		if serr := h.s3.stop(); serr != nil && err == nil {
			err = serr
		}
	}()

	for _, s := range o.scenarios {
		var err error
		switch s {
		case "pipeline":
			err = h.pipeline(ctx)
		case "memory":
			err = h.memory(ctx)
		case "planner":
			for _, n := range o.spec.PlannerHosts {
				if err = h.plannerScale(ctx, n); err != nil {
					break
				}
			}
		case "hostlist":
			err = h.hostListDetails(ctx, o.spec.PlannerHosts[0])
		case "fleet":
			err = h.fleetUtil(ctx)
		case "sweep":
			err = h.batchSweep(ctx)
		case "faults":
			err = h.faultTax(ctx)
		case "faultsprod":
			err = h.prodFaults(ctx)
		case "outage":
			err = h.outage(ctx)
		case "controlplane":
			err = h.controlPlane(ctx)
		case "subscription10m":
			err = h.subscription(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}

	h.rep.Finished = time.Now().UTC()
	h.rep.print(os.Stdout)
	if o.jsonOut != "" {
		data, err := json.MarshalIndent(h.rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.jsonOut, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// machine describes where the numbers come from.
func machine() string {
	return fmt.Sprintf("%s %s/%s, %d CPUs", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
}
