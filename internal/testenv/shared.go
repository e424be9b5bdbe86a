package testenv

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/minio/minio-go/v7"
)

// MinIOServer is a bucket of its own for one test, on the MinIO process that
// the package's tests share.
type MinIOServer struct {
	Endpoint  string // host:port, plain HTTP
	AccessKey string
	SecretKey string
	Bucket    string // created, empty, unique to this call
	Client    *minio.Client
}

var (
	mainRunning atomic.Bool
	bucketSeq   atomic.Int64

	shared struct {
		once sync.Once
		mu   sync.Mutex // guards proc and dir against Main's cleanup
		proc *MinIOProcess
		dir  string
		err  error
	}
)

// Main runs the package's tests and then stops the shared MinIO process and
// removes its data. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M) {
	mainRunning.Store(true)

	// An interrupted run (Ctrl-C, a killed CI job) still cleans up. Owned by
	// Main, which waits for it before it returns.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	testsDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case sig := <-sigs:
			stopSharedMinIO()
			fmt.Fprintf(os.Stderr, "testenv: %v: stopped the shared MinIO\n", sig)
			os.Exit(130)
		case <-testsDone:
		}
	})

	code := m.Run()
	close(testsDone)
	wg.Wait()
	signal.Stop(sigs)
	stopSharedMinIO()
	os.Exit(code)
}

// MinIO returns a new, empty, uniquely named bucket on a MinIO process shared
// by the package's tests (started on first use, stopped by Main). The test
// must not stop that process; use DedicatedMinIO for that.
func MinIO(t testing.TB) *MinIOServer {
	t.Helper()
	if !mainRunning.Load() {
		t.Fatalf("testenv.MinIO needs testenv.Main to stop MinIO afterwards: add\n" +
			"\tfunc TestMain(m *testing.M) { testenv.Main(m) }\nto the package's tests")
	}
	bin := MinIOBinary(t)
	p := sharedMinIO(bin)
	if shared.err != nil {
		t.Fatalf("testenv: shared MinIO: %v", shared.err)
	}
	if !p.Running() {
		t.Fatalf("testenv: the shared MinIO on %s has exited; output:\n%s", p.Endpoint, p.Logs())
	}
	client, err := p.Client()
	if err != nil {
		t.Fatalf("testenv: MinIO client: %v", err)
	}
	bucket := bucketName(t.Name(), bucketSeq.Add(1))
	ctx, cancel := ctxTimeout()
	defer cancel()
	if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("testenv: create bucket %s: %v", bucket, err)
	}
	return &MinIOServer{
		Endpoint:  p.Endpoint,
		AccessKey: p.AccessKey,
		SecretKey: p.SecretKey,
		Bucket:    bucket,
		Client:    client,
	}
}

func sharedMinIO(bin string) *MinIOProcess {
	shared.once.Do(func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		sweepStaleMinIODirs()
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", sharedDirPrefix, os.Getpid()))
		if err != nil {
			shared.err = err
			return
		}
		shared.dir = dir
		shared.proc, shared.err = StartMinIO(bin, dir)
	})
	return shared.proc
}

func stopSharedMinIO() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.proc != nil {
		if err := shared.proc.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: %v\n", err)
		}
	}
	if shared.dir != "" {
		if err := os.RemoveAll(shared.dir); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: remove MinIO data: %v\n", err)
		}
		shared.dir = ""
	}
}

// sharedDirPrefix starts the name of a shared MinIO data directory, followed
// by the pid of the test binary that owns it.
const sharedDirPrefix = "qfetch-minio-"

// sweepStaleMinIODirs removes the data directories of test binaries that died
// without cleaning up (a go test timeout ends a binary by panic, so Main's
// cleanup never runs; the kernel kills MinIO, but its data stays).
func sweepStaleMinIODirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), sharedDirPrefix+"*-*"))
	for _, dir := range matches {
		pidText, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), sharedDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

var notBucketChars = regexp.MustCompile(`[^a-z0-9]+`)

// bucketName makes a valid S3 bucket name that says which test made it:
// lower-case letters, digits and single hyphens, at most 63 characters.
func bucketName(testName string, seq int64) string {
	base := strings.Trim(notBucketChars.ReplaceAllString(strings.ToLower(testName), "-"), "-")
	suffix := fmt.Sprintf("-%d", seq)
	if limit := 63 - len("t-") - len(suffix); len(base) > limit {
		base = strings.TrimRight(base[:limit], "-")
	}
	return "t-" + base + suffix
}
