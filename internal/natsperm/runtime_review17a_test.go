package natsperm_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/fetch"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/plan"
	"github.com/qfetch/qfetch/internal/testenv"
	"github.com/qfetch/qfetch/internal/testrun"
)

// A worker whose NATS user lacks one right it needs only after the start
// (writing a batch's result) must not stay ready while it fetches batches
// it can never record: the refusal is an operator's to fix (exit code 3 at
// the start), so at run time it must show on /readyz.
func TestRefusedAtRunTimeIsNotReady(t *testing.T) {
	e := testrun.New(t, testrun.Options{Hosts: 200, BatchSize: 100, PageSize: 300})
	cut := `"$KV.QFETCH_RUNS.*.done.>"`
	_, cfgFor := startNATSWithout(t, natsperm.Worker, cut)
	ctx := t.Context()
	var log syncBuf
	parts := map[natsperm.Role]app.Parts{}
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker} { // the planner creates the streams
		nc, js, err := app.Connect(cfgFor(r), "qfetch-"+string(r), slog.New(slog.NewTextHandler(&log, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		q, err := app.Queue(ctx, js, cfgFor(r), config.Fleet{MaxInFlight: 2}, 0, appRole[r])
		if err != nil {
			t.Fatalf("%s sets up: %v\nlog:\n%s", r, err, log.String())
		}
		parts[r] = app.Parts{Log: slog.New(slog.NewTextHandler(&log, nil)), Qualys: e.Client, Store: e.Store, Queue: q,
			Prefix: testrun.Prefix, Owner: string(r)}
	}
	p := parts[natsperm.Planner].Planner(plan.Config{BatchSize: 100, PageSize: 300, Now: func() time.Time { return e.Sim.Clock().Now() }})
	if _, err := p.Run(ctx); err != nil {
		t.Fatalf("planner: %v\nlog:\n%s", err, log.String())
	}
	w := parts[natsperm.Worker].Worker(fetch.Config{Slots: 2, PullWait: 200 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond, ProbeEvery: 200 * time.Millisecond}, nil)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(wctx, wctx) })
	defer func() { stop(); wg.Wait() }()
	testenv.Eventually(t, 30*time.Second, func() bool { return strings.Contains(log.String(), "NATS refused") },
		"the worker was never refused")
	testenv.Eventually(t, 15*time.Second, func() bool { return w.Ready() != nil },
		"refused writing batch results, the worker still answers ready")
	t.Logf("ready: %v", w.Ready())
}

// startNATSWithout starts a TLS server like testrun.StartSecureNATS whose
// role user lacks the publish permission line cut.
func startNATSWithout(t *testing.T, role natsperm.Role, cut string) (string, func(natsperm.Role) config.NATS) {
	t.Helper()
	dir := t.TempDir()
	tlsf := testenv.TLS(t)
	seeds := map[natsperm.Role]string{}
	var blocks []string
	for _, r := range natsperm.Roles {
		kp, _ := nkeys.CreateUser()
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		seeds[r] = filepath.Join(dir, string(r)+".nk")
		if err := os.WriteFile(seeds[r], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		a := natsperm.Authorization([]natsperm.User{{Role: r, NKey: pub}})
		if r == role {
			if !strings.Contains(a, cut) {
				t.Fatalf("%s has no %s", r, cut)
			}
			a = strings.Replace(a, cut, "", 1)
		}
		_, body, _ := strings.Cut(a, "users = [\n")
		body, _, _ = strings.Cut(body, "  ]\n}\n")
		blocks = append(blocks, body)
	}
	conf := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\ntls { cert_file: %q\n key_file: %q\n ca_file: %q\n timeout: 5 }\nauthorization { users = [\n%s  ]\n}\n",
		filepath.Join(dir, "js"), tlsf.ServerCert, tlsf.ServerKey, tlsf.CA, strings.Join(blocks, ""))
	path := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	url := fmt.Sprintf("nats://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
	return url, func(r natsperm.Role) config.NATS {
		return config.NATS{URL: url, CAFile: tlsf.CA, NKeyFile: seeds[r], StreamReplicas: 1}
	}
}
