package natsperm_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testrun"
)

// #17.1 says workers cannot publish into the watermark, and only operators'
// credentials move it. The finisher (which runs in workers) no longer
// writes it; the planner advances it over completed runs. So a worker
// credential cannot set it anywhere, backwards included (hosts processed
// since then would never be fetched, I1).
func TestWorkerCannotMoveTheWatermarkBack(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker} {
		_, js := conn(t, n, r, &log)
		if _, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r]); err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
	}
	refused(t, n, natsperm.Worker, "move the watermark back", func(ctx context.Context, q app.JetStream, _ jetstream.JetStream) error {
		return q.SetWatermark(ctx, ledger.Watermark{Time: time.Unix(0, 0).UTC(), Run: "20000101T000000Z-old", By: "worker", At: time.Now().UTC()})
	})
}

// Before any planner ran, a worker or the exporter creates nothing (#17: a
// hostile pre-creation would choose the streams' and buckets' settings):
// setting up tells it to wait (retryable: its start check keeps it not
// ready), and NATS refused it nothing, since it asked for nothing outside
// its rights. Once the planner created them, it binds.
func TestWorkerAndExporterWaitForThePlanner(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	for _, r := range []natsperm.Role{natsperm.Worker, natsperm.Exporter} {
		nc, js := conn(t, n, r, &log)
		_, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		err = app.Refused(nc, err)
		if !errors.Is(err, msg.ErrNotSetUp) || failure.ClassOf(err) != failure.ClassRetryable {
			t.Fatalf("%s sets up before any planner: %v (class %v); want a retryable %v\nlog:\n%s",
				r, err, failure.ClassOf(err), msg.ErrNotSetUp, log.String())
		}
	}
	_, pjs := conn(t, n, natsperm.Planner, &log)
	for _, s := range []string{msg.StreamBatches, msg.StreamDLQ, "KV_" + ledger.BucketRuns, "KV_" + ledger.BucketState} {
		if _, err := pjs.Stream(t.Context(), s); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("%s exists before any planner ran (lookup: %v)", s, err)
		}
	}
	if _, err := app.Queue(t.Context(), pjs, n.Config(natsperm.Planner), config.Fleet{MaxInFlight: 2}, 0, app.RolePlanner); err != nil {
		t.Fatalf("planner sets up: %v\nlog:\n%s", err, log.String())
	}
	for _, r := range []natsperm.Role{natsperm.Worker, natsperm.Exporter} {
		_, js := conn(t, n, r, &log)
		if _, err := app.Queue(t.Context(), js, n.Config(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r]); err != nil {
			t.Errorf("%s sets up once the planner has: %v\nlog:\n%s", r, err, log.String())
		}
	}
}

// A bucket pre-created with settings qfetch did not choose (by a worker's
// credential before this version, or anyone with the server's admin
// rights) is refused by the planner, naming the setting, with exit code 3.
func TestPlannerRefusesAPreCreatedBucket(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	var log syncBuf
	_, js := conn(t, n, natsperm.Planner, &log)
	if _, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: ledger.BucketState, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	_, err := app.Queue(t.Context(), js, n.Config(natsperm.Planner), config.Fleet{MaxInFlight: 2}, 0, app.RolePlanner)
	if !errors.Is(err, msg.ErrIncompatible) || app.ExitCode(err) != app.ExitFleetWide ||
		!strings.Contains(err.Error(), "bucket "+ledger.BucketState+" exists with storage Memory") {
		t.Fatalf("planner sets up on a pre-created bucket: %v (exit %d); want exit 3 naming the storage", err, app.ExitCode(err))
	}
}
