package ledger

import (
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
)

// The buckets' Gets go to the stream leader: with direct gets (nats.go's
// default) a follower that has not caught up after a node restart answers
// a record just written as missing. Setup turns them off on a bucket it
// creates and on one an earlier version created with them on, and every
// role's Ledger then reads with STREAM.MSG.GET, never DIRECT.GET.
func TestBucketsReadFromTheLeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		existing bool // the buckets were created with direct gets on first
	}{{"created by Setup", false}, {"created before, with direct gets", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tc.existing {
				for _, c := range wanted(Config{Replicas: 1}) {
					if _, err := e.JS.CreateKeyValue(e.Ctx, c); err != nil {
						t.Fatal(err)
					}
					if s, _ := e.JS.Stream(e.Ctx, "KV_"+c.Bucket); !s.CachedInfo().Config.AllowDirect {
						t.Fatalf("the scenario needs a bucket with direct gets: %s has none", c.Bucket)
					}
				}
			}
			l, err := Setup(e.Ctx, e.JS, Config{})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range wanted(Config{}) {
				s, err := e.JS.Stream(e.Ctx, "KV_"+c.Bucket)
				if err != nil {
					t.Fatal(err)
				}
				if s.CachedInfo().Config.AllowDirect {
					t.Errorf("bucket %s still allows direct gets", c.Bucket)
				}
			}

			// Count the read requests of each kind on a connection of
			// the test's own.
			nc, err := nats.Connect(e.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			var direct, leader atomic.Int64
			for subj, n := range map[string]*atomic.Int64{"$JS.API.DIRECT.GET.>": &direct, "$JS.API.STREAM.MSG.GET.>": &leader} {
				if _, err := nc.Subscribe(subj, func(*nats.Msg) { n.Add(1) }); err != nil {
					t.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			worker, err := Setup(e.Ctx, e.JS, Config{KeepBuckets: true})
			if err != nil {
				t.Fatal(err)
			}
			r, err := l.CreateRun(e.Ctx, RunRecord{ID: "20250301T000000Z-abc123", After: testAfter, Before: testBefore, State: RunPlanning})
			if err != nil {
				t.Fatal(err)
			}
			for _, reader := range []*Ledger{l, worker} {
				got, err := reader.GetRun(e.Ctx, r.ID)
				if err != nil || got.Revision != r.Revision {
					t.Fatalf("GetRun: %+v, %v; want revision %d", got, err, r.Revision)
				}
			}
			// A request the test's connection sees after the reads
			// arrived after them: the counts are final.
			if _, err := e.JS.AccountInfo(e.Ctx); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			if direct.Load() != 0 || leader.Load() < 2 {
				t.Errorf("reads: %d direct gets, %d leader gets; want 0 and at least 2", direct.Load(), leader.Load())
			}
		})
	}
}
