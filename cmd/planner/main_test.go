package main

import (
	"testing"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestPreflight: a wrong Qualys password or a missing bucket stops the
// planner with exit code 3 before it opens a run: no run record, no batch,
// no Host List call. With both right it plans.
func TestPreflight(t *testing.T) {
	tests := []struct {
		name string
		vars map[string]string
		code int
	}{
		{"wrong password", map[string]string{"QFETCH_QUALYS_PASSWORD": "not-the-password"}, app.ExitFleetWide},
		{"bucket missing", map[string]string{"QFETCH_S3_BUCKET": "qfetch-no-such-bucket"}, app.ExitFleetWide},
		{"both right", nil, app.ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := testrun.New(t, testrun.Options{Hosts: 200, BatchSize: 100})
			vars := map[string]string{
				"QFETCH_QUALYS_URL":      e.SimURL,
				"QFETCH_QUALYS_USERNAME": e.Sim.Username(),
				"QFETCH_QUALYS_PASSWORD": e.Sim.Password(),
				"QFETCH_NATS_URL":        e.NATSURL,
				"QFETCH_S3_ENDPOINT":     e.MinIO.Endpoint,
				"QFETCH_S3_SECURE":       "false",
				"QFETCH_S3_ACCESS_KEY":   e.MinIO.AccessKey,
				"QFETCH_S3_SECRET_KEY":   e.MinIO.SecretKey,
				"QFETCH_S3_BUCKET":       e.MinIO.Bucket,
				"QFETCH_S3_PREFIX":       testrun.Prefix,
				"QFETCH_BATCH_SIZE":      "100",
				"QFETCH_LOG_FORMAT":      "json",
			}
			for k, v := range tt.vars {
				vars[k] = v
			}
			for k, v := range vars {
				t.Setenv(k, v)
			}
			err := run(t.Context())
			if code := app.ExitCode(err); code != tt.code {
				t.Fatalf("exit code %d (%v), want %d", code, err, tt.code)
			}
			ids, rerr := e.Q.RunIDs(t.Context())
			if rerr != nil {
				t.Fatal(rerr)
			}
			if tt.code != app.ExitOK {
				if len(ids) != 0 {
					t.Errorf("runs %v left behind", ids)
				}
				if n := e.Sim.Stats().Endpoints["hostlist"].Requests; n != 0 {
					t.Errorf("%d Host List calls before the checks passed", n)
				}
				s, serr := e.JS.Stream(t.Context(), msg.StreamBatches)
				if serr != nil {
					t.Fatal(serr)
				}
				if info, _ := s.Info(t.Context()); info != nil && info.State.Msgs != 0 {
					t.Errorf("%d batches published", info.State.Msgs)
				}
				return
			}
			if len(ids) != 1 {
				t.Errorf("runs %v, want one", ids)
			}
		})
	}
}
