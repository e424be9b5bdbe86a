package config

import (
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
)

// A credential pasted where its file's path belongs (the seed itself in
// QFETCH_NATS_NKEY_FILE, a password in QFETCH_QUALYS_PASSWORD_FILE: an
// env-from-secret instead of a mounted file) is a bad value of a secret's
// variable: the error names the variable and never echoes the value (I7).
func TestPastedCredentialNotEchoed(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := user.Seed()
	const pass = "Tr0ub4dor&3-pasted"
	for name, env := range map[string]map[string]string{
		"nkey seed":       with("QFETCH_NATS_NKEY_FILE", string(seed)),
		"creds":           with("QFETCH_NATS_CREDS_FILE", string(seed)),
		"client key":      with("QFETCH_NATS_CERT_FILE", "/nonexistent", "QFETCH_NATS_KEY_FILE", pass),
		"qualys password": with("QFETCH_QUALYS_PASSWORD_FILE", pass),
	} {
		t.Run(name, func(t *testing.T) {
			if name == "qualys password" {
				delete(env, "QFETCH_QUALYS_PASSWORD")
			}
			setEnv(t, env)
			var s testSpec
			err := Load(Prefix, &s)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, secret := range []string{string(seed), pass} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("the error echoes the credential: %v", err)
				}
			}
		})
	}
}
