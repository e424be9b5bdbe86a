package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/qfetch/qfetch/internal/testenv"
)

// The NATS TLS and credential files are checked at start, one line per
// problem naming the variable, never a seed.
func TestNATSAuthErrors(t *testing.T) {
	dir := t.TempDir()
	tl := testenv.TLS(t)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	userSeed, _ := user.Seed()
	account, err := nkeys.CreateAccount()
	if err != nil {
		t.Fatal(err)
	}
	accountSeed, _ := account.Seed()
	seedFile := write("user.nk", string(userSeed)+"\n")
	accountFile := write("account.nk", string(accountSeed))
	garbled := write("garbled.nk", "SU"+strings.Repeat("A", 40))
	notPEM := write("not.pem", "hello")
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"all set", with("QFETCH_NATS_NKEY_FILE", seedFile, "QFETCH_NATS_CA_FILE", tl.CA,
			"QFETCH_NATS_CERT_FILE", tl.ClientCert, "QFETCH_NATS_KEY_FILE", tl.ClientKey), nil},
		{"nkey missing", with("QFETCH_NATS_NKEY_FILE", missing),
			[]string{fmt.Sprintf("QFETCH_NATS_NKEY_FILE: cannot read %q: no such file or directory", missing)}},
		{"nkey garbled", with("QFETCH_NATS_NKEY_FILE", garbled),
			[]string{fmt.Sprintf("QFETCH_NATS_NKEY_FILE: %q does not hold an NKey seed (one line starting SU)", garbled)}},
		{"nkey of an account", with("QFETCH_NATS_NKEY_FILE", accountFile),
			[]string{fmt.Sprintf("QFETCH_NATS_NKEY_FILE: %q holds an NKey seed that is not a user's (want one starting SU)", accountFile)}},
		{"nkey and creds", with("QFETCH_NATS_NKEY_FILE", seedFile, "QFETCH_NATS_CREDS_FILE", seedFile),
			[]string{"QFETCH_NATS_NKEY_FILE: set either it or the creds file, not both"}},
		{"ca missing", with("QFETCH_NATS_CA_FILE", missing),
			[]string{fmt.Sprintf("QFETCH_NATS_CA_FILE: cannot read %q: no such file or directory", missing)}},
		{"ca not pem", with("QFETCH_NATS_CA_FILE", notPEM),
			[]string{fmt.Sprintf("QFETCH_NATS_CA_FILE: CA file %s holds no PEM certificate", notPEM)}},
		{"cert without key", with("QFETCH_NATS_CERT_FILE", tl.ClientCert),
			[]string{"QFETCH_NATS_KEY_FILE: required with a client certificate"}},
		{"key without cert", with("QFETCH_NATS_KEY_FILE", tl.ClientKey),
			[]string{"QFETCH_NATS_CERT_FILE: required with a client key"}},
		{"key of another cert", with("QFETCH_NATS_CERT_FILE", tl.ServerCert, "QFETCH_NATS_KEY_FILE", tl.ClientKey),
			[]string{"QFETCH_NATS_CERT_FILE: with the key file, not a usable certificate and key: tls: private key does not match public key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			var s testSpec
			err := Load(Prefix, &s)
			if got := errLines(err); !slices.Equal(got, tt.want) {
				t.Fatalf("errors:\n got %q\nwant %q", got, tt.want)
			}
			if err != nil && (strings.Contains(err.Error(), string(userSeed)) || strings.Contains(err.Error(), string(accountSeed))) {
				t.Errorf("an error shows a seed: %v", err)
			}
		})
	}
}
