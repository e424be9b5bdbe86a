package natsperm_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testrun"
)

// A subject a role may write is not a licence to purge the whole stream
// behind it: a "Nats-Rollup: all" header on one allowed KV key or batch
// subject must not delete what other keys and subjects hold (I7: the
// exporter writes only its lock; a worker cannot erase run records, the
// watermark's history, the planner lock or queued batches). The status
// writer's lock bucket allows roll-ups (TTL markers) and holds nothing but
// that lock, so rolling it up erases only what its writer may overwrite.
func TestNoRoleRollsUpAWholeStream(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker} {
		_, js := conn(t, n, r, &log)
		if _, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r]); err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
	}
	_, pjs := conn(t, n, natsperm.Planner, &log)
	ctx := t.Context()
	if _, err := pjs.Publish(ctx, "qfetch.batch.20260110T000000Z-other", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	for _, kv := range []struct{ bucket, key string }{
		{ledger.BucketRuns, "20260110T000000Z-other"},
		{ledger.BucketState, "watermark"},
		{ledger.BucketLocks, "planner"},
	} {
		if _, err := pjs.Publish(ctx, "$KV."+kv.bucket+"."+kv.key, []byte("kept")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pjs.Publish(ctx, "qfetch.batch.20260110T000000Z-other", []byte("{}")); err != nil {
		t.Fatal(err)
	}

	locks, planner := "KV_"+ledger.BucketLocks, "$KV."+ledger.BucketLocks+".planner"
	for _, tt := range []struct {
		role           natsperm.Role
		subject        string
		stream, victim string // the stream and a subject of it that must survive
		open           string // why this one still rolls up
	}{
		{natsperm.Exporter, "$KV." + ledger.BucketLocks + ".status-writer", locks, planner, ""},
		{natsperm.Worker, "$KV." + ledger.BucketLocks + ".status-writer", locks, planner, ""},
		{natsperm.Exporter, "$KV." + ledger.BucketStatusLock + ".status-writer", locks, planner, ""},
		{natsperm.Worker, "$KV." + ledger.BucketStatusLock + ".status-writer", locks, planner, ""},
		{natsperm.Worker, "$KV." + ledger.BucketRuns + ".20260110T000000Z-mine", "KV_" + ledger.BucketRuns, "$KV." + ledger.BucketRuns + ".20260110T000000Z-other", ""},
		{natsperm.Worker, "$KV." + ledger.BucketState + ".watermark", "KV_" + ledger.BucketState, "", ""},
		{natsperm.Worker, "qfetch.batch.20260110T000000Z-mine", msg.StreamBatches, "qfetch.batch.20260110T000000Z-other", batchOpen},
	} {
		t.Run(string(tt.role)+" on "+tt.subject, func(t *testing.T) {
			if tt.open != "" {
				t.Skip(tt.open)
			}
			_, js := conn(t, n, tt.role, &log)
			before := msgs(ctx, t, pjs, tt.stream)
			m := nats.NewMsg(tt.subject)
			m.Data = []byte("x")
			m.Header.Set("Nats-Rollup", "all")
			_, err := js.PublishMsg(ctx, m)
			after := msgs(ctx, t, pjs, tt.stream)
			if err == nil && after < before {
				t.Errorf("%s rolled up %s: %d messages before, %d after", tt.role, tt.stream, before, after)
			}
			if tt.victim != "" {
				s, _ := pjs.Stream(ctx, tt.stream)
				if _, gerr := s.GetLastMsgForSubject(ctx, tt.victim); gerr != nil {
					t.Errorf("%s erased %s: %v", tt.role, tt.victim, gerr)
				}
			}
		})
	}
}

// Still open: the server requires roll-ups on a stream with message
// schedules, cannot turn schedules off again, and forbids sources on such a
// stream (README "Security" says why and what detects it).
const batchOpen = "message schedules need roll-ups: anyone who may publish a batch can empty the queue"

func msgs(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	i, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return i.State.Msgs
}
