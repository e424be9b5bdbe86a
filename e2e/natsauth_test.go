package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testrun"
)

// The real planner and worker on a TLS NATS with per-role users: each
// started with another role's NATS user is refused what its job needs, and
// exits 3 with a log line naming the refused operation. With its own user,
// the planner plans (the in-process test in natsperm runs the whole job);
// it goes first, since it alone creates the streams and buckets (#17).
func TestNATSRolesRefusedExit3(t *testing.T) {
	b := buildBinaries(t, t.TempDir())
	sim := startSim(t, b, dataset(2000, 1)...)
	w := newWorld(t, b, sim, sharedBucket(t))
	n := testrun.StartSecureNATS(t)
	as := func(r natsperm.Role) []string {
		c := n.Config(r)
		// Port 0: the default :8080 may be taken by anything else on the machine.
		return append(w.env(""), "QFETCH_NATS_URL="+c.URL, "QFETCH_NATS_CA_FILE="+c.CAFile, "QFETCH_NATS_NKEY_FILE="+c.NKeyFile,
			"QFETCH_WORKER_LISTEN=127.0.0.1:0")
	}
	t.Run("planner as planner", func(t *testing.T) {
		p := startProc(t, "planner-as-planner", b.Planner, nil, as(natsperm.Planner))
		p.Wait(2*time.Minute, app.ExitOK)
		if log := p.tail(logTail); strings.Contains(log, "NATS refused") {
			t.Errorf("the planner was refused with its own user:\n%s", log)
		}
	})
	for _, tt := range []struct {
		name, bin string
		role      natsperm.Role
		refused   string // the operation the log names
	}{
		// It may not create the workers consumer (the fleet cap).
		{"worker as exporter", b.Worker, natsperm.Exporter, "create consumer workers on stream QFETCH_BATCHES"},
		// It may not create (nor bring to the planner's settings) the
		// buckets, nor, further on, take the planner lock (natsperm's tests
		// show that).
		{"planner as exporter", b.Planner, natsperm.Exporter, "create stream KV_QFETCH_RUNS"},
		// Workers may not either.
		{"planner as worker", b.Planner, natsperm.Worker, "create stream KV_QFETCH_RUNS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startProc(t, strings.ReplaceAll(tt.name, " ", "-"), tt.bin, nil, as(tt.role))
			p.Wait(2*time.Minute, app.ExitFleetWide)
			if log := p.tail(logTail); !strings.Contains(log, "NATS refused") || !strings.Contains(log, tt.refused) {
				t.Errorf("the log does not name the refused operation %q:\n%s", tt.refused, log)
			}
		})
	}
}
