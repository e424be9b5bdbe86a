package natsperm_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testrun"
)

// The server takes TLS only, from a client that trusts its CA, and only
// users it knows.
func TestTLSAndCredentialsRequired(t *testing.T) {
	n := testrun.StartSecureNATS(t)
	stranger := filepath.Join(t.TempDir(), "stranger.nk")
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	if err := os.WriteFile(stranger, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)

	t.Run("plain connection", func(t *testing.T) {
		// nats.go upgrades by itself when the server asks for TLS: speak
		// the protocol in plain text, as a careless client would.
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(n.URL, "nats://"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		info, err := r.ReadString('\n')
		if err != nil || !strings.Contains(info, `"tls_required":true`) {
			t.Fatalf("INFO %q (%v): the server must require TLS", info, err)
		}
		if _, err := c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
			return // closed already: refused
		}
		rest, _ := io.ReadAll(r)
		if strings.Contains(string(rest), "PONG") {
			t.Fatalf("a plain-text client was served: %q", rest)
		}
	})
	for _, tt := range []struct {
		name string
		edit func(*testCfg)
		want []string
	}{
		{"wrong CA", func(c *testCfg) { c.CAFile = n.TLS.OtherCA }, []string{"connecting to NATS", "certificate signed by unknown authority"}},
		{"no CA", func(c *testCfg) { c.CAFile = "" }, []string{"connecting to NATS", "certificate"}},
		{"no credentials", func(c *testCfg) { c.NKeyFile = "" }, []string{"connecting to NATS", "Authorization Violation"}},
		{"unknown user", func(c *testCfg) { c.NKeyFile = stranger }, []string{"connecting to NATS", "Authorization Violation"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := n.Config(natsperm.Worker)
			tc := testCfg{CAFile: c.CAFile, NKeyFile: c.NKeyFile}
			tt.edit(&tc)
			c.CAFile, c.NKeyFile = tc.CAFile, tc.NKeyFile
			nc, _, err := app.Connect(c, "qfetch-test", log)
			if err == nil {
				nc.Close()
				t.Fatal("connected")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if failure.ClassOf(err) != failure.ClassFleetWide || app.ExitCode(err) != app.ExitFleetWide {
				t.Errorf("%v: exit code %d, want 3", err, app.ExitCode(err))
			}
			if strings.Contains(err.Error(), string(seed)) {
				t.Error("the error shows a seed")
			}
		})
	}
	t.Run("right CA and user", func(t *testing.T) {
		nc, _, err := app.Connect(n.Config(natsperm.Worker), "qfetch-test", log)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if !nc.TLSRequired() && nc.ConnectedUrl() == "" {
			t.Error("not connected over TLS")
		}
		if _, err := nc.TLSConnectionState(); err != nil {
			t.Errorf("not TLS: %v", err)
		}
	})
}

type testCfg struct{ CAFile, NKeyFile string }

func TestRefusal(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want *natsperm.RefusedError
	}{
		{nil, nil},
		{errors.New("nats: timeout"), nil},
		// The sentinel without the server's words: refused, subject unknown.
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `something else`),
			&natsperm.RefusedError{Op: "use", Subject: "(a subject the server did not name)"}},
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish to "$KV.QFETCH_STATE.watermark"`),
			&natsperm.RefusedError{Op: "publish to", Subject: "$KV.QFETCH_STATE.watermark"}},
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "_INBOX.x.>"`),
			&natsperm.RefusedError{Op: "subscribe to", Subject: "_INBOX.x.>"}},
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Subscription to "a.b" using queue "q"`),
			&natsperm.RefusedError{Op: "subscribe to", Subject: "a.b"}},
		{fmt.Errorf("%w: %s", nats.ErrPermissionViolation, `Permissions Violation for Publish with Reply of "_R_.x"`),
			&natsperm.RefusedError{Op: "publish with the reply", Subject: "_R_.x"}},
		{fmt.Errorf("wrapped: %w", &natsperm.RefusedError{Op: "publish to", Subject: "s"}),
			&natsperm.RefusedError{Op: "publish to", Subject: "s"}},
	} {
		got := natsperm.Refusal(tt.err)
		if (got == nil) != (tt.want == nil) || got != nil && *got != *tt.want {
			t.Errorf("Refusal(%v) = %+v, want %+v", tt.err, got, tt.want)
		}
	}
	re := &natsperm.RefusedError{Op: "publish to", Subject: "$KV.QFETCH_STATE.watermark"}
	if got := re.Operation(); got != "write key watermark of bucket QFETCH_STATE" {
		t.Errorf("Operation = %q", got)
	}
	for subject, want := range map[string]string{
		"$JS.API.CONSUMER.CREATE.QFETCH_BATCHES.workers.qfetch.batch.>": "create consumer workers on stream QFETCH_BATCHES",
		"$JS.API.STREAM.UPDATE.QFETCH_DLQ":                              "update stream QFETCH_DLQ",
		"$JS.API.STREAM.MSG.DELETE.QFETCH_DLQ":                          "delete a message of stream QFETCH_DLQ",
		"$JS.API.DIRECT.GET.KV_QFETCH_RUNS.$KV.QFETCH_RUNS.x":           "read a message of stream KV_QFETCH_RUNS",
		"$JS.API.INFO":                               "JetStream API request INFO",
		"qfetch.batch.20260110T000000Z":              "publish to qfetch.batch.20260110T000000Z",
		"$JS.ACK.QFETCH_BATCHES.workers.1.2.3.4.5.6": "acknowledge a message",
	} {
		if got := (&natsperm.RefusedError{Op: "publish to", Subject: subject}).Operation(); got != want {
			t.Errorf("Operation(%s) = %q, want %q", subject, got, want)
		}
	}
	if !errors.Is(re, nats.ErrPermissionViolation) {
		t.Error("a refusal must be a nats.ErrPermissionViolation")
	}
}

// Every role's rights are literal subjects or wildcards NATS accepts, and
// no role may delete, purge or reconfigure what it does not own.
func TestPermissionsNeverStructural(t *testing.T) {
	for _, r := range natsperm.Roles {
		p := natsperm.For(r)
		for _, s := range p.Publish {
			if s == ">" || strings.Contains(s, "STREAM.DELETE") || strings.Contains(s, "STREAM.PURGE") ||
				strings.HasPrefix(s, "$JS.API.CONSUMER.DELETE."+"QFETCH_BATCHES") {
				t.Errorf("%s may delete or purge: %s", r, s)
			}
			if strings.HasPrefix(s, "_INBOX") {
				t.Errorf("%s may publish into inboxes (forge answers): %s", r, s)
			}
			if r != natsperm.Planner && strings.Contains(s, "STREAM.UPDATE") {
				t.Errorf("%s may change a stream: %s", r, s)
			}
			if r != natsperm.Worker && strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE.QFETCH_BATCHES") {
				t.Errorf("%s may create or change the workers consumer (the fleet cap): %s", r, s)
			}
			if (r == natsperm.Exporter || r == natsperm.Planner) && (s == "qfetch.dlq.>" || strings.HasPrefix(s, "$JS.ACK")) {
				t.Errorf("%s may dead-letter or ack: %s", r, s)
			}
			if r == natsperm.Exporter && (strings.HasPrefix(s, "qfetch.") || s == "$KV.QFETCH_STATE.watermark") {
				t.Errorf("the exporter may publish %s", s)
			}
		}
	}
}

// The config the prod overlay ships (public keys from the server's
// environment) loads in nats-server, one user per role with its rights.
func TestEnvUsersConfigLoads(t *testing.T) {
	dir := t.TempDir()
	keys := map[string]string{}
	for _, r := range natsperm.Roles {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		t.Setenv(natsperm.EnvVar(r), pub)
		keys[pub] = string(r)
	}
	if err := os.WriteFile(filepath.Join(dir, "qfetch-auth.conf"), []byte(natsperm.Authorization(natsperm.EnvUsers())), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte("include ./qfetch-auth.conf\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts.Nkeys) != len(natsperm.Roles) {
		t.Fatalf("%d users, want %d", len(opts.Nkeys), len(natsperm.Roles))
	}
	for _, u := range opts.Nkeys {
		r := natsperm.Role(keys[u.Nkey])
		if r == "" || u.Permissions == nil || u.Permissions.Publish == nil {
			t.Fatalf("user %s: role %q, permissions %+v", u.Nkey, r, u.Permissions)
		}
		if got, want := u.Permissions.Publish.Allow, natsperm.For(r).Publish; !slices.Equal(got, want) {
			t.Errorf("%s may publish to\n%q\nwant\n%q", r, got, want)
		}
	}
}
