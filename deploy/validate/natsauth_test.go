package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/qfetch/qfetch/internal/natsperm"
)

const prodNATS = k8sDir + "/overlays/prod"

// The NATS users and permissions the prod servers load are natsperm's,
// byte for byte: a change of rights is a change of natsperm.For, rendered
// here (QFETCH_UPDATE_NATS_AUTH=1 go test -run TestNATSAuthConfigRendered
// writes it).
func TestNATSAuthConfigRendered(t *testing.T) {
	path := filepath.Join(prodNATS, "nats", "qfetch-auth.conf")
	want := natsperm.Authorization(natsperm.EnvUsers())
	if os.Getenv("QFETCH_UPDATE_NATS_AUTH") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s is not natsperm's rendering; rerun with QFETCH_UPDATE_NATS_AUTH=1 to write it", path)
	}
	for _, r := range natsperm.Roles {
		if !strings.Contains(want, "nkey: $"+natsperm.EnvVar(r)+"\n") {
			t.Errorf("no user for %s", r)
		}
	}
}

// The prod NATS servers require TLS and load the rendered users.
func TestNATSServerValues(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(prodNATS, "nats-helm-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Config struct {
			Nats struct {
				TLS struct {
					Enabled    bool           `json:"enabled"`
					SecretName string         `json:"secretName"`
					Merge      map[string]any `json:"merge"`
				} `json:"tls"`
			} `json:"nats"`
			Merge map[string]any `json:"merge"`
		} `json:"config"`
		Container struct {
			Env map[string]any `json:"env"`
		} `json:"container"`
	}
	if err := sigsyaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if !v.Config.Nats.TLS.Enabled || v.Config.Nats.TLS.SecretName == "" {
		t.Error("the NATS client port must require TLS (config.nats.tls.enabled, secretName)")
	}
	if inc, _ := v.Config.Merge["$include"].(string); !strings.HasSuffix(inc, "/qfetch-auth.conf") {
		t.Errorf("config.merge must include qfetch-auth.conf, got %q", inc)
	}
	for _, r := range natsperm.Roles {
		if _, ok := v.Container.Env[natsperm.EnvVar(r)]; !ok {
			t.Errorf("the NATS container has no %s (the %s user's public key)", natsperm.EnvVar(r), r)
		}
	}
}

// Each prod pod signs in to NATS over TLS as its own role, from files on a
// Secret of its own: no pod can read another role's seed.
func TestNATSCredentialsPerRole(t *testing.T) {
	o := build(t, "prod")
	role := map[string]natsperm.Role{"planner": natsperm.Planner, "worker": natsperm.Worker, "exporter": natsperm.Exporter}
	seen := map[natsperm.Role]bool{}
	for _, q := range qfetchContainers(t, o) {
		r, ok := role[q.binary]
		if !ok {
			t.Errorf("%s: binary %s has no NATS role", q.pod.owner, q.binary)
			continue
		}
		seen[r] = true
		for _, name := range []string{"QFETCH_NATS_NKEY_FILE", "QFETCH_NATS_CA_FILE"} {
			v, ok := q.env[name]
			if !ok {
				t.Errorf("%s: %s unset", q.pod.owner, name)
				continue
			}
			secret, _, err := o.secretFileRef(q.pod.spec, q.c, v.value)
			if err != nil {
				t.Errorf("%s: %s: %v", q.pod.owner, name, err)
				continue
			}
			if want := "qfetch-nats-" + string(r); !strings.HasPrefix(secret, want) {
				t.Errorf("%s: %s is on Secret %s, want the %s role's %s", q.pod.owner, name, secret, r, want)
			}
		}
		for _, vol := range q.pod.spec.Volumes {
			if vol.Secret == nil || !strings.HasPrefix(vol.Secret.SecretName, "qfetch-nats-") {
				continue
			}
			if !strings.HasPrefix(vol.Secret.SecretName, "qfetch-nats-"+string(r)) {
				t.Errorf("%s (%s) mounts %s", q.pod.owner, r, vol.Secret.SecretName)
			}
		}
	}
	for _, r := range []natsperm.Role{natsperm.Planner, natsperm.Worker, natsperm.Exporter} {
		if !seen[r] {
			t.Errorf("no %s pod in prod", r)
		}
	}
}
