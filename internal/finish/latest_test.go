package finish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runid"
	"github.com/qfetch/qfetch/internal/testenv"
)

// latestStores are the stores latest.json is fenced in: S3 (MinIO) for the
// fleet, the directory for qfetch local.
var latestStores = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"s3", func(t *testing.T) Store {
		srv := testenv.MinIO(t)
		s, err := objstore.NewS3(objstore.S3Config{Endpoint: srv.Endpoint, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
			Bucket: srv.Bucket, Region: "us-east-1"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"dir", func(t *testing.T) Store {
		d, err := objstore.NewDir(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return d
	}},
}

const latestPrefix = "q"

// latestOf is what a finisher of the run ending at before writes.
func latestOf(before time.Time) Latest {
	run := runid.New(before)
	return Latest{Run: run, Before: before, Manifest: objstore.ManifestKey(latestPrefix, run),
		Success: objstore.SuccessKey(latestPrefix, run), Updated: before.Add(time.Minute)}
}

var (
	t0     = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	oldest = latestOf(t0)
	older  = latestOf(t0.Add(time.Hour))
	newer  = latestOf(t0.Add(2 * time.Hour))
)

// farFuture is a latest.json naming a run whose window ends a year from
// now: a planner's clock gone wrong, or a forged object.
func farFuture() string {
	b, err := json.Marshal(latestOf(time.Now().AddDate(1, 0, 0).Truncate(time.Second)))
	if err != nil {
		panic(err)
	}
	return string(b)
}

func latestFinisher(store Store) *Finisher {
	return New(Config{Prefix: latestPrefix, Owner: "test"}, nil, store, slog.New(slog.DiscardHandler))
}

// readLatest returns what key names; ok is false when it holds nothing.
func readLatest(t *testing.T, store Store, key string) (l Latest, ok bool) {
	t.Helper()
	r, err := store.Get(context.Background(), key)
	if errors.Is(err, objstore.ErrNotFound) {
		return l, false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := json.NewDecoder(r).Decode(&l); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return l, true
}

// Updates one after the other: latest.json names the run with the latest
// window end, whatever the order, and content that is not a Latest is
// replaced.
func TestUpdateLatestSequence(t *testing.T) {
	cases := []struct {
		name    string
		initial string // raw content of latest.json first; "" for none
		updates []Latest
		want    Latest
	}{
		{"first", "", []Latest{older}, older},
		{"newer after older", "", []Latest{older, newer}, newer},
		{"older after newer", "", []Latest{newer, older}, newer},
		{"same run again keeps the first write", "", []Latest{older, {Run: older.Run, Before: older.Before, Updated: t0}}, older},
		{"unreadable content is replaced", "{not json", []Latest{oldest}, oldest},
		{"older after newer after oldest", "", []Latest{oldest, newer, older}, newer},
		{"a window ending in a year is replaced", farFuture(), []Latest{older}, older},
	}
	for _, st := range latestStores {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				store := st.open(t)
				f := latestFinisher(store)
				key := objstore.LatestKey(latestPrefix)
				if tc.initial != "" {
					if _, err := store.Put(t.Context(), key, strings.NewReader(tc.initial), objstore.PutOptions{}); err != nil {
						t.Fatal(err)
					}
				}
				for _, l := range tc.updates {
					if err := f.updateLatest(t.Context(), key, l); err != nil {
						t.Fatalf("updateLatest(%s): %v", l.Run, err)
					}
				}
				got, ok := readLatest(t, store, key)
				if !ok || !got.Before.Equal(tc.want.Before) || got.Run != tc.want.Run || got.Manifest != tc.want.Manifest ||
					!got.Updated.Equal(tc.want.Updated) {
					t.Errorf("latest.json = %+v (present %t), want %+v", got, ok, tc.want)
				}
			})
		}
	}
}

// gateKey marks a context whose first Put of latest.json waits on a channel.
type gateKey struct{}

// gatedStore holds the first Put of a context marked with gateKey until its
// channel closes, and counts the Puts refused by their condition.
type gatedStore struct {
	Store
	refused atomic.Int32
}

func (s *gatedStore) Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error) {
	if gate, ok := ctx.Value(gateKey{}).(*gate); ok {
		gate.once.Do(func() { close(gate.reached); <-gate.open })
	}
	o, err := s.Store.Put(ctx, key, r, opts)
	if errors.Is(err, objstore.ErrChanged) || errors.Is(err, objstore.ErrExists) {
		s.refused.Add(1)
	}
	return o, err
}

type gate struct {
	once    sync.Once
	reached chan struct{}
	open    chan struct{}
}

// The interleaving that moved latest.json backwards: the older run's
// finisher reads, the newer run's finisher reads and writes, then the older
// one writes. Its write is refused now, it reads again and leaves the newer
// run there.
func TestUpdateLatestOlderWriteAfterNewer(t *testing.T) {
	for _, st := range latestStores {
		for _, initial := range []*Latest{nil, &oldest} {
			name := "absent"
			if initial != nil {
				name = "oldest there"
			}
			t.Run(st.name+"/"+name, func(t *testing.T) {
				store := &gatedStore{Store: st.open(t)}
				f := latestFinisher(store)
				key := objstore.LatestKey(latestPrefix)
				if initial != nil {
					if err := f.updateLatest(t.Context(), key, *initial); err != nil {
						t.Fatal(err)
					}
				}
				g := &gate{reached: make(chan struct{}), open: make(chan struct{})}
				done := make(chan error, 1)
				go func() { done <- f.updateLatest(context.WithValue(t.Context(), gateKey{}, g), key, older) }()
				<-g.reached // the older run's finisher has read, and is about to write
				if err := f.updateLatest(t.Context(), key, newer); err != nil {
					t.Fatal(err)
				}
				close(g.open)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				if got, _ := readLatest(t, store, key); got.Run != newer.Run {
					t.Errorf("latest.json names %s, want the newer run %s", got.Run, newer.Run)
				}
				if n := store.refused.Load(); n != 1 {
					t.Errorf("%d writes refused, want the older run's first one", n)
				}
			})
		}
	}
}

// Many finishers of an older and a newer run at once, the older ones
// released first or last: latest.json ends naming the newer run, and a
// reader watching it throughout never sees it move back.
func TestUpdateLatestRace(t *testing.T) {
	const each, rounds = 8, 3
	for _, st := range latestStores {
		for _, order := range [][]Latest{{older, newer}, {newer, older}} {
			t.Run(fmt.Sprintf("%s/%s first", st.name, map[bool]string{true: "older", false: "newer"}[order[0] == older]), func(t *testing.T) {
				store := st.open(t)
				f := latestFinisher(store)
				for round := range rounds {
					key := objstore.LatestKey(fmt.Sprintf("%s/round%d", latestPrefix, round))
					if err := f.updateLatest(t.Context(), key, oldest); err != nil {
						t.Fatal(err)
					}
					stop := make(chan struct{})
					watched := make(chan error, 1)
					go func() { watched <- watchLatest(t.Context(), store, key, stop) }()

					var wg sync.WaitGroup
					errs := make(chan error, 2*each)
					starts := []chan struct{}{make(chan struct{}), make(chan struct{})}
					for i, l := range order {
						for range each {
							wg.Go(func() {
								<-starts[i]
								errs <- f.updateLatest(t.Context(), key, l)
							})
						}
					}
					close(starts[0])
					close(starts[1])
					wg.Wait()
					close(stop)
					close(errs)
					for err := range errs {
						if err != nil {
							t.Fatalf("updateLatest: %v", err)
						}
					}
					if err := <-watched; err != nil {
						t.Fatal(err)
					}
					if got, _ := readLatest(t, store, key); got.Run != newer.Run {
						t.Fatalf("round %d: latest.json names %s, want the newer run %s", round, got.Run, newer.Run)
					}
				}
			})
		}
	}
}

// watchLatest reads key until stop closes and fails if the window end it
// names ever goes back.
func watchLatest(ctx context.Context, store Store, key string, stop <-chan struct{}) error {
	var last time.Time
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		r, err := store.Get(ctx, key)
		if err != nil {
			return err
		}
		var l Latest
		err = json.NewDecoder(r).Decode(&l)
		r.Close()
		if err != nil {
			return err
		}
		if l.Before.Before(last) {
			return fmt.Errorf("latest.json moved back from %s to %s (run %s)", last, l.Before, l.Run)
		}
		last = l.Before
	}
}
