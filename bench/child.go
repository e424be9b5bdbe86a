package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Child modes: the baselines run in a process of their own so that their
// CPU time and peak RSS are theirs alone, as the worker's are.
const (
	modeRaw    = "raw"    // stream the response into PutObject(size -1)
	modeNaive  = "naive"  // read the whole response, then upload it
	modeWorker = "worker" // cmd/worker's wiring in-process, under a CPU profile
)

// childJob travels on the child's stdin, so that no secret is on a command line.
type childJob struct {
	Mode       string `json:"mode"`
	URL        string `json:"url"`
	Username   string `json:"username"`
	Password   string `json:"password"`
	Form       string `json:"form"`
	Endpoint   string `json:"endpoint"`
	AccessKey  string `json:"access_key"`
	SecretKey  string `json:"secret_key"`
	Bucket     string `json:"bucket"`
	Key        string `json:"key"`
	CPUProfile string `json:"cpu_profile,omitempty"`
}

// childResult is a transfer child's answer on stdout.
type childResult struct {
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

func runChild() error {
	var job childJob
	if err := json.NewDecoder(os.Stdin).Decode(&job); err != nil {
		return fmt.Errorf("reading the job: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch job.Mode {
	case modeRaw, modeNaive:
		res, err := transfer(ctx, job)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(res)
	case modeWorker:
		return inProcessWorker(ctx, job)
	}
	return fmt.Errorf("unknown mode %q", job.Mode)
}

// transfer fetches one detection response and stores it the baseline way.
func transfer(ctx context.Context, job childJob) (childResult, error) {
	mc, err := minio.New(job.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(job.AccessKey, job.SecretKey, ""), Secure: false, Region: "us-east-1",
	})
	if err != nil {
		return childResult{}, err
	}
	// The same transport settings qfetch's client starts from.
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	opts := minio.PutObjectOptions{PartSize: objstore.DefaultPartSize, ContentType: "application/xml"}
	if job.CPUProfile != "" {
		f, err := os.Create(job.CPUProfile)
		if err != nil {
			return childResult{}, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return childResult{}, err
		}
		defer pprof.StopCPUProfile()
	}

	cpu0, start := selfCPU(), time.Now()
	resp, err := postDetections(ctx, hc, job.URL, job.Username, job.Password, job.Form)
	if err != nil {
		return childResult{}, err
	}
	defer resp.Body.Close()
	var info minio.UploadInfo
	switch job.Mode {
	case modeRaw:
		info, err = mc.PutObject(ctx, job.Bucket, job.Key, resp.Body, -1, opts)
	case modeNaive:
		var body []byte
		if body, err = io.ReadAll(resp.Body); err == nil {
			info, err = mc.PutObject(ctx, job.Bucket, job.Key, bytes.NewReader(body), int64(len(body)), opts)
		}
	}
	if err != nil {
		return childResult{}, err
	}
	return childResult{Bytes: info.Size, Seconds: time.Since(start).Seconds(), CPUSeconds: (selfCPU() - cpu0).Seconds()}, nil
}

// samplePeakHeap writes a heap profile to path each time the heap in use
// reaches a new high (by 1 MiB or more), so that what is live at the
// worker's peak can be read afterwards (inuse_space, as of the GC before).
// The returned func stops it and reports its first error.
func samplePeakHeap(path string) func() error {
	done := make(chan struct{})
	var err error
	var wg sync.WaitGroup
	wg.Go(func() {
		var high uint64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse < high+mib {
				continue
			}
			high = ms.HeapInuse
			f, ferr := os.Create(path)
			if ferr == nil {
				ferr = pprof.Lookup("heap").WriteTo(f, 0)
				ferr = errors.Join(ferr, f.Close())
			}
			if ferr != nil && err == nil {
				err = ferr
			}
		}
	})
	return func() error {
		close(done)
		wg.Wait()
		return err
	}
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return rusageCPU(&ru)
}

// inProcessWorker is cmd/worker's run without its HTTP endpoints, until
// SIGTERM, under a CPU profile when job.CPUProfile is set.
func inProcessWorker(ctx context.Context, job childJob) (err error) {
	var s app.WorkerSpec
	if err := app.LoadConfig(&s); err != nil {
		return err
	}
	parts, err := app.Build(ctx, "qfetch-bench-worker", app.RoleWorker, s.Sections())
	if err != nil {
		return err
	}
	defer parts.Close()
	w := parts.Worker(s.FetchConfig(), nil)
	if job.CPUProfile == "" {
		return w.Run(ctx, context.Background())
	}
	return profiled(job.CPUProfile, func() error { return w.Run(ctx, context.Background()) })
}

// profiled runs run under a CPU profile written to path, then writes where
// the memory was allocated (alloc_space) and what is still held
// (inuse_space) to path.heap, and heap profiles at each new peak to
// path.peakheap.
func profiled(path string, run func() error) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	stopSampler := samplePeakHeap(path + ".peakheap")
	err = run()
	if serr := stopSampler(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	hf, err := os.Create(path + ".heap")
	if err != nil {
		return err
	}
	defer hf.Close()
	return pprof.Lookup("heap").WriteTo(hf, 0)
}
