package testrun

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testenv"
)

// SecureNATS is a NATS server as the prod overlay runs it: TLS only, one
// NKey user per role with the role's permissions (natsperm), JetStream on.
type SecureNATS struct {
	URL   string // nats://127.0.0.1:<port>; the server requires TLS
	Conf  string // the server's config file
	TLS   testenv.TLSFiles
	Seeds map[natsperm.Role]string // each role's NKey seed file
	srv   *server.Server
}

// StartSecureNATS starts an embedded server from a config file that
// includes natsperm's rendered authorization, as the prod overlay does;
// it stops when t ends.
func StartSecureNATS(t testing.TB) *SecureNATS {
	t.Helper()
	dir := t.TempDir()
	s := &SecureNATS{TLS: testenv.TLS(t), Seeds: map[natsperm.Role]string{}}
	var users []natsperm.User
	for _, r := range natsperm.Roles {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		s.Seeds[r] = filepath.Join(dir, string(r)+".nk")
		if err := os.WriteFile(s.Seeds[r], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		users = append(users, natsperm.User{Role: r, NKey: pub})
	}
	if err := os.WriteFile(filepath.Join(dir, "qfetch-auth.conf"), []byte(natsperm.Authorization(users)), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Conf = filepath.Join(dir, "nats.conf")
	conf := fmt.Sprintf(`listen: "127.0.0.1:-1"
jetstream { store_dir: %q }
tls {
  cert_file: %q
  key_file: %q
  ca_file: %q
  timeout: 5
}
include ./qfetch-auth.conf
`, filepath.Join(dir, "js"), s.TLS.ServerCert, s.TLS.ServerKey, s.TLS.CA)
	if err := os.WriteFile(s.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(s.Conf)
	if err != nil {
		t.Fatalf("the rendered NATS config does not load: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatal("secure NATS not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	s.srv = srv
	// nats://, as the prod overlay says: the CA makes the client use TLS.
	s.URL = fmt.Sprintf("nats://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
	return s
}

// Config is the NATS configuration of a process in role.
func (s *SecureNATS) Config(role natsperm.Role) config.NATS {
	return config.NATS{URL: s.URL, CAFile: s.TLS.CA, NKeyFile: s.Seeds[role], StreamReplicas: 1}
}
