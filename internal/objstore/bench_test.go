package objstore

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/testenv"
)

const benchSize = 256 << 20

// BenchmarkPut streams 256 MiB of unknown length into MinIO through S3.Put
// and through minio-go's own PutObject with the same part size, and into a
// directory. B/op and peak-heap-MiB show the memory a Put holds: about one
// part, whatever the size of the stream (I4).
//
//	go test -run '^$' -bench Put -benchtime 3x ./internal/objstore/
func BenchmarkPut(b *testing.B) {
	srv, s, d := benchStores(b)
	ctx := context.Background()
	b.Run("objstore-S3", func(b *testing.B) {
		measure(b, benchSize, func() error { _, err := s.Put(ctx, "bench", newPattern(benchSize), PutOptions{}); return err })
	})
	b.Run("minio-go-PutObject", func(b *testing.B) {
		measure(b, benchSize, func() error {
			_, err := srv.Client.PutObject(ctx, srv.Bucket, "bench-raw", newPattern(benchSize), -1,
				minio.PutObjectOptions{PartSize: DefaultPartSize})
			return err
		})
	})
	b.Run("objstore-Dir", func(b *testing.B) {
		measure(b, benchSize, func() error { _, err := d.Put(ctx, "bench", newPattern(benchSize), PutOptions{}); return err })
	})
}

// benchStores are a MinIO server, a store on it and a directory store.
func benchStores(b *testing.B) (*testenv.MinIOServer, *S3, *Dir) {
	srv := testenv.MinIO(b)
	s := newS3(b, S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		Bucket: srv.Bucket, Region: "us-east-1"})
	d, err := NewDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return srv, s, d
}

// BenchmarkUpload shows what the fence of the uploads costs (design.md
// I8): Put against Begin and Complete, for a small object (one PUT against
// four requests: create, part, complete and the orphan listing) and a
// medium one (multipart either way), in MinIO and in a directory.
//
//	go test -run '^$' -bench Upload ./internal/objstore/
func BenchmarkUpload(b *testing.B) {
	_, s, d := benchStores(b)
	ctx := context.Background()
	stores := []struct {
		name string
		s    store
	}{{"S3", s}, {"Dir", d}}
	for _, size := range []int64{64 << 10, 20 << 20} {
		for _, st := range stores {
			b.Run(fmt.Sprintf("%s-%dKiB-Put", st.name, size>>10), func(b *testing.B) {
				measure(b, size, func() error { _, err := st.s.Put(ctx, "bench", newPattern(size), PutOptions{}); return err })
			})
			b.Run(fmt.Sprintf("%s-%dKiB-Upload", st.name, size>>10), func(b *testing.B) {
				measure(b, size, func() error {
					u, err := st.s.Begin(ctx, "bench", PutOptions{})
					if err != nil {
						return err
					}
					_, err = st.s.Complete(ctx, u, newPattern(size))
					return err
				})
			})
		}
	}
}

// measure runs put b.N times and reports throughput and the peak of the heap
// in use above what it was before, sampled while put runs.
func measure(b *testing.B, size int64, put func() error) {
	b.SetBytes(size)
	b.ReportAllocs()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse

	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	b.ResetTimer()
	for b.Loop() {
		if err := put(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(peak-min(base, peak))/(1<<20), "peak-heap-MiB")
}

// pattern is n bytes from a fixed block of noise, read without allocating.
type pattern struct {
	left int64
	off  int
}

var noise = func() []byte {
	b := make([]byte, 1<<20)
	if _, err := io.ReadFull(stream(42, int64(len(b))), b); err != nil {
		panic(err)
	}
	return b
}()

func newPattern(n int64) *pattern { return &pattern{left: n} }

func (p *pattern) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > p.left {
		b = b[:p.left]
	}
	n := copy(b, noise[p.off:])
	p.off = (p.off + n) % len(noise)
	p.left -= int64(n)
	return n, nil
}
