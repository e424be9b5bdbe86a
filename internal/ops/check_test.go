package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// startServer starts a nats-server with opts for the rest of the test.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// natsWithoutJetStream is a NATS server as some installations have one.
func natsWithoutJetStream(t *testing.T) string {
	t.Helper()
	s := startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	return s.ClientURL()
}

// closedPort is an address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCheck breaks one dependency at a time and expects that check, and
// only the checks that depend on it, to fail with a clear line.
func TestCheck(t *testing.T) {
	e := setup(t, 100)
	const wrongPassword = "hunter2-wrong"
	const wrongSecret = "wrong-secret-key-1234"
	good := func() ops.CheckConfig {
		return ops.CheckConfig{NATSURL: e.NATSURL, Store: e.Store, Prefix: testrun.Prefix, API: e.Client, Timeout: 10 * time.Second}
	}
	s3 := func(bucket, secret string) ops.ProbeStore {
		st, err := objstore.NewS3(objstore.S3Config{Endpoint: e.MinIO.Endpoint, AccessKey: e.MinIO.AccessKey, SecretKey: secret, Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	api := func(url, password string) ops.Detections {
		c, err := qualys.New(qualys.Config{BaseURL: url, Username: e.Sim.Username(), Password: password, ConnectTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name  string
		setup func(*ops.CheckConfig)
		// want maps check names to their expected level; checks not named
		// must be ok.
		want map[string]ops.Level
	}{
		{"all good", func(*ops.CheckConfig) {}, nil},
		{"NATS unreachable", func(c *ops.CheckConfig) { c.NATSURL = "nats://user:natspass@" + closedPort(t) },
			map[string]ops.Level{"nats": ops.Fail, "jetstream": ops.Skipped}},
		{"JetStream disabled", func(c *ops.CheckConfig) { c.NATSURL = natsWithoutJetStream(t) },
			map[string]ops.Level{"jetstream": ops.Fail}},
		{"fleet cap differs", func(c *ops.CheckConfig) { c.Queue.MaxInFlight = 1 },
			map[string]ops.Level{"consumer workers": ops.Warn}},
		{"bucket missing", func(c *ops.CheckConfig) { c.Store = s3("no-such-bucket", e.MinIO.SecretKey) },
			map[string]ops.Level{"bucket": ops.Fail, "bucket writable": ops.Skipped}},
		{"wrong S3 secret", func(c *ops.CheckConfig) { c.Store = s3(e.MinIO.Bucket, wrongSecret) },
			map[string]ops.Level{"bucket": ops.Fail, "bucket writable": ops.Skipped}},
		{"wrong Qualys password", func(c *ops.CheckConfig) { c.API = api(e.SimURL, wrongPassword) },
			map[string]ops.Level{"qualys login": ops.Fail, "qualys limits": ops.Skipped}},
		{"Qualys unreachable", func(c *ops.CheckConfig) { c.API = api("http://"+closedPort(t), e.Sim.Password()) },
			map[string]ops.Level{"qualys login": ops.Fail, "qualys limits": ops.Skipped}},
		{"in flight above the Qualys limit", func(c *ops.CheckConfig) { c.Queue.MaxInFlight = 5 },
			map[string]ops.Level{"qualys limits": ops.Warn, "consumer workers": ops.Warn}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good()
			cfg.Queue.MaxInFlight = 2
			tt.setup(&cfg)
			var buf bytes.Buffer
			results, err := ops.Check(t.Context(), cfg, ops.Output{W: &buf})
			failing := false
			for _, r := range results {
				want, named := tt.want[r.Name]
				if !named {
					want = ops.OK
				}
				if r.Level != want {
					t.Errorf("%s: %s (%s), want %s", r.Name, r.Level, r.Detail, want)
				}
				failing = failing || r.Level == ops.Fail
				if r.Level != ops.OK && len(r.Detail) < 10 {
					t.Errorf("%s: detail %q says too little", r.Name, r.Detail)
				}
			}
			for name := range tt.want {
				if !hasCheck(results, name) {
					t.Errorf("no %q check in %+v", name, results)
				}
			}
			if failing != errors.Is(err, ops.ErrCheckFailed) {
				t.Errorf("error %v with failing=%v", err, failing)
			}
			if lines := strings.Count(buf.String(), "\n"); lines != len(results) {
				t.Errorf("%d lines for %d checks:\n%s", lines, len(results), buf.String())
			}
			for _, secret := range []string{wrongPassword, wrongSecret, "natspass", e.Sim.Password(), e.MinIO.SecretKey} {
				if strings.Contains(buf.String(), secret) {
					t.Errorf("output shows a secret:\n%s", buf.String())
				}
			}
		})
	}
}

func hasCheck(results []ops.CheckResult, name string) bool {
	for _, r := range results {
		if r.Name == name {
			return true
		}
	}
	return false
}

// TestCheckIncompatibleStream: a stream of the same name that would lose
// batches is a failure naming the setting.
func TestCheckIncompatibleStream(t *testing.T) {
	e := setup(t, 100)
	other := natsURLWithStream(t, e)
	var buf bytes.Buffer
	results, err := ops.Check(t.Context(), ops.CheckConfig{NATSURL: other, Store: e.Store, Prefix: testrun.Prefix, API: e.Client}, ops.Output{W: &buf, JSON: true})
	if !errors.Is(err, ops.ErrCheckFailed) {
		t.Fatalf("check: %v", err)
	}
	var decoded []ops.CheckResult
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil || len(decoded) != len(results) {
		t.Fatalf("--json: %v\n%s", err, buf.String())
	}
	for _, r := range results {
		if r.Name == "stream QFETCH_BATCHES" {
			if r.Level != ops.Fail || !strings.Contains(r.Detail, "retention") {
				t.Fatalf("%+v", r)
			}
			return
		}
	}
	t.Fatalf("no stream check: %+v", results)
}

// natsURLWithStream starts a JetStream server holding a QFETCH_BATCHES
// stream with limits retention, as a hand-made one might be.
func natsURLWithStream(t *testing.T, e *env) string {
	t.Helper()
	s := startServer(t, &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: true, StoreDir: t.TempDir()})
	js := testrun.Connect(t, s.ClientURL())
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "QFETCH_BATCHES", Subjects: []string{"qfetch.batch.>"}}); err != nil {
		t.Fatal(fmt.Errorf("creating the stream: %w", err))
	}
	return s.ClientURL()
}

// TestCheckAtTheCap: with the fleet using every Qualys slot, the limits
// cannot be read; that is a warning, not a failure (I6).
func TestCheckAtTheCap(t *testing.T) {
	e := setup(t, 100)
	if err := e.Sim.SetFaults(qualysim.Faults{SlowStartFor: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := e.Sim.ForceFault(qualysim.Detection, qualysim.FaultSlowStart, 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for range 2 {
		wg.Go(func() {
			form := qualys.DetectionQuery{IDs: []uint64{1}}.Form()
			if resp, err := e.Client.Detections(ctx, form, nil); err == nil {
				resp.Close()
			}
		})
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return e.Sim.Running(qualysim.Detection) == 2 }, "two calls holding the slots")
	var buf bytes.Buffer
	results, err := ops.Check(t.Context(), ops.CheckConfig{NATSURL: e.NATSURL, Store: e.Store, Prefix: testrun.Prefix, API: e.Client,
		Queue: msg.Config{MaxInFlight: 2}}, ops.Output{W: &buf})
	if err != nil {
		t.Fatalf("check: %v\n%s", err, buf.String())
	}
	if !hasCheck(results, "qualys limits") {
		t.Fatalf("no qualys limits check: %+v", results)
	}
	for _, r := range results {
		if r.Name == "qualys limits" && (r.Level != ops.Warn || !strings.Contains(r.Detail, "asked to wait")) {
			t.Fatalf("%+v", r)
		}
	}
}
