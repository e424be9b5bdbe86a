package validate

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
)

// qfetchContainer is a container running planner, worker or exporter.
type qfetchContainer struct {
	pod    pod
	c      *corev1.Container
	binary string
	env    map[string]envVal
}

func qfetchContainers(t *testing.T, o *overlay) []qfetchContainer {
	t.Helper()
	var out []qfetchContainer
	for _, p := range o.pods() {
		for _, c := range containers(p.spec) {
			b := binary(c)
			if _, ok := specs[b]; !ok {
				continue
			}
			env, err := o.env(c)
			if err != nil {
				t.Fatalf("%s %s: %v", p.owner, c.Name, err)
			}
			out = append(out, qfetchContainer{pod: p, c: c, binary: b, env: env})
		}
	}
	got := map[string]bool{}
	for _, q := range out {
		got[q.binary] = true
	}
	if !got["planner"] || !got["worker"] || !got["exporter"] {
		t.Fatalf("overlays/%s: want a planner, a worker and an exporter container, found %v", o.name, got)
	}
	return out
}

// listenVars are the programs that serve /healthz, /readyz and /metrics,
// and the variable with their address.
var listenVars = map[string]string{
	"worker":   "QFETCH_WORKER_LISTEN",
	"exporter": "QFETCH_EXPORTER_LISTEN",
}

// reads reports whether a program reads a variable.
func reads(t *testing.T, binary, name string) bool {
	t.Helper()
	return slices.ContainsFunc(vars(t, binary), func(v config.Var) bool { return v.Name == name })
}

func forEachOverlay(t *testing.T, f func(t *testing.T, o *overlay)) {
	for _, name := range overlayNames {
		t.Run(name, func(t *testing.T) { f(t, build(t, name)) })
	}
}

func TestRequiredVariablesSet(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, q := range qfetchContainers(t, o) {
			for _, v := range vars(t, q.binary) {
				if !v.Required {
					continue
				}
				_, set := q.env[v.Name]
				_, file := q.env[v.Name+"_FILE"]
				if !set && !(v.Secret && file) {
					t.Errorf("%s (%s): required %s is not set", q.pod.owner, q.binary, v.Name)
				}
			}
		}
	})
}

// TestConfigLoads feeds each container's resolved environment (ConfigMap,
// Secret keys, and Secret files written out) to config.Load with the
// binary's spec: the values must be ones the binary accepts, and every
// QFETCH_* name must be one that planner, worker or exporter reads (a typo
// in a ConfigMap is otherwise silent).
func TestConfigLoads(t *testing.T) {
	known := map[string]bool{}
	for b := range specs {
		for _, v := range vars(t, b) {
			known[v.Name] = true
			if v.Secret {
				known[v.Name+"_FILE"] = true
			}
		}
	}
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, q := range qfetchContainers(t, o) {
			t.Run(q.binary, func(t *testing.T) {
				for _, kv := range os.Environ() {
					if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, config.Prefix+"_") {
						t.Setenv(name, "") // empty counts as unset
					}
				}
				dir := t.TempDir()
				for name, v := range q.env {
					if !strings.HasPrefix(name, config.Prefix+"_") {
						continue
					}
					if !known[name] {
						t.Errorf("%s: %s is read by no qfetch program (planner, worker, exporter)", q.pod.owner, name)
						continue
					}
					val := v.value
					if strings.HasSuffix(name, "_FILE") {
						b, err := o.secretFile(q.pod.spec, q.c, val)
						if err != nil {
							t.Errorf("%s: %s: %v", q.pod.owner, name, err)
							continue
						}
						val = filepath.Join(dir, name)
						if err := os.WriteFile(val, b, 0o600); err != nil {
							t.Fatal(err)
						}
					}
					t.Setenv(name, val)
				}
				if err := config.Load(config.Prefix, specs[q.binary]()); err != nil {
					t.Errorf("%s: the %s would not start:\n%v", q.pod.owner, q.binary, err)
				}
			})
		}
	})
}

// TestSecretsOnlyFromSecrets: a secret reaches a container through a
// secretKeyRef or a file on a Secret volume, never as a literal, a
// ConfigMap value or a whole-Secret envFrom.
func TestSecretsOnlyFromSecrets(t *testing.T) {
	secretVars := map[string]bool{}
	for b := range specs {
		for _, v := range vars(t, b) {
			if v.Secret {
				secretVars[v.Name] = true
			}
		}
	}
	isSecret := func(name string) bool {
		return secretVars[name] || (logging.SecretKey(name) && !strings.HasSuffix(name, "_FILE"))
	}
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, cm := range objectsOf[*corev1.ConfigMap](o) {
			for k := range cm.Data {
				if isSecret(k) {
					t.Errorf("ConfigMap %s holds secret %s", cm.Name, k)
				}
			}
		}
		for _, p := range o.pods() {
			for _, c := range containers(p.spec) {
				for _, ef := range c.EnvFrom {
					if ef.SecretRef != nil {
						t.Errorf("%s %s: envFrom a whole Secret; use secretKeyRef or a file", p.owner, c.Name)
					}
				}
				for _, e := range c.Env {
					if isSecret(e.Name) && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
						t.Errorf("%s %s: %s not from a secretKeyRef", p.owner, c.Name, e.Name)
					}
				}
				for _, a := range append(slices.Clone(c.Command), c.Args...) {
					if m := regexp.MustCompile(`\$\((\w+)\)`).FindStringSubmatch(a); m != nil && isSecret(m[1]) && binary(c) != "qfetch" {
						t.Errorf("%s %s: secret %s on the command line", p.owner, c.Name, m[1])
					}
				}
			}
		}
		for _, q := range qfetchContainers(t, o) {
			for name, v := range q.env {
				if strings.HasSuffix(name, "_FILE") && secretVars[strings.TrimSuffix(name, "_FILE")] {
					if _, err := o.secretFile(q.pod.spec, q.c, v.value); err != nil {
						t.Errorf("%s: %s: %v", q.pod.owner, name, err)
					}
				}
			}
		}
	})
}

var tagRE = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// imagePinned: a tag other than latest, or a digest.
func imagePinned(image string) error {
	if _, digest, ok := strings.Cut(image, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") {
			return fmt.Errorf("bad digest")
		}
		return nil
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(last, ":")
	switch {
	case !ok:
		return fmt.Errorf("no tag")
	case tag == "latest":
		return fmt.Errorf("tag latest")
	case !tagRE.MatchString(tag):
		return fmt.Errorf("bad tag %q", tag)
	}
	return nil
}

func TestImagePinned(t *testing.T) {
	for _, tc := range []struct {
		image string
		ok    bool
	}{
		{"nats:2.15.2-alpine", true}, {"localhost:5000/x:1", true}, {"x@sha256:ab", true},
		{"nats", false}, {"nats:latest", false}, {"localhost:5000/x", false},
	} {
		if err := imagePinned(tc.image); (err == nil) != tc.ok {
			t.Errorf("imagePinned(%q) = %v, want ok=%v", tc.image, err, tc.ok)
		}
	}
}

func TestImagesPinned(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, p := range o.pods() {
			for _, c := range containers(p.spec) {
				if err := imagePinned(c.Image); err != nil {
					t.Errorf("%s %s: image %q: %v", p.owner, c.Name, c.Image, err)
				}
			}
		}
	})
}

func TestResourcesSet(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, p := range o.pods() {
			for _, c := range containers(p.spec) {
				r := c.Resources
				for _, missing := range []struct {
					what string
					ok   bool
				}{
					{"requests.cpu", !r.Requests.Cpu().IsZero()},
					{"requests.memory", !r.Requests.Memory().IsZero()},
					{"limits.memory", !r.Limits.Memory().IsZero()},
				} {
					if !missing.ok {
						t.Errorf("%s %s: no %s", p.owner, c.Name, missing.what)
					}
				}
				if r.Limits.Memory().Cmp(*r.Requests.Memory()) < 0 {
					t.Errorf("%s %s: memory limit below request", p.owner, c.Name)
				}
			}
		}
	})
}

// hasPort: a probe's or Service's port names or numbers one the container
// exposes.
func hasPort(c *corev1.Container, port intstr.IntOrString) bool {
	for _, cp := range c.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) ||
			(port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

func TestProbesAndPorts(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, p := range o.pods() {
			for _, c := range containers(p.spec) {
				for kind, pr := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
					if pr == nil {
						continue
					}
					var port *intstr.IntOrString
					switch {
					case pr.HTTPGet != nil:
						port = &pr.HTTPGet.Port
					case pr.TCPSocket != nil:
						port = &pr.TCPSocket.Port
					}
					if port != nil && !hasPort(c, *port) {
						t.Errorf("%s %s: %s probe port %s is not a container port", p.owner, c.Name, kind, port.String())
					}
				}
			}
		}
		for _, q := range qfetchContainers(t, o) {
			listen, ok := listenVars[q.binary]
			if !ok {
				continue
			}
			if q.c.LivenessProbe == nil || q.c.LivenessProbe.HTTPGet == nil || q.c.LivenessProbe.HTTPGet.Path != "/healthz" {
				t.Errorf("%s: liveness probe is not GET /healthz", q.pod.owner)
			}
			if q.c.ReadinessProbe == nil || q.c.ReadinessProbe.HTTPGet == nil || q.c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("%s: readiness probe is not GET /readyz", q.pod.owner)
			}
			_, port, err := net.SplitHostPort(valueOf(t, q.binary, q.env, listen))
			if err != nil {
				t.Fatalf("%s: %v", listen, err)
			}
			n, _ := strconv.Atoi(port)
			if !hasPort(q.c, intstr.FromInt32(int32(n))) {
				t.Errorf("%s: %s port %s is not a container port", q.pod.owner, listen, port)
			}
		}
		// Every Service port reaches a container port of the pods it selects.
		for _, s := range objectsOf[*corev1.Service](o) {
			var sel []pod
			for _, p := range o.pods() {
				if len(s.Spec.Selector) > 0 && matchesAll(s.Spec.Selector, p.labels) {
					sel = append(sel, p)
				}
			}
			if len(sel) == 0 {
				t.Errorf("Service %s selects no pod", s.Name)
			}
			for _, sp := range s.Spec.Ports {
				for _, p := range sel {
					found := false
					for _, c := range p.spec.Containers {
						found = found || hasPort(&c, sp.TargetPort)
					}
					if !found {
						t.Errorf("Service %s port %s: target %s not on %s", s.Name, sp.Name, sp.TargetPort.String(), p.owner)
					}
				}
			}
		}
	})
}

func matchesAll(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestPodSecurity(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, p := range o.pods() {
			ps := p.spec.SecurityContext
			if p.spec.AutomountServiceAccountToken == nil || *p.spec.AutomountServiceAccountToken {
				t.Errorf("%s: mounts a service account token", p.owner)
			}
			for _, c := range containers(p.spec) {
				sc := c.SecurityContext
				if sc == nil {
					t.Errorf("%s %s: no securityContext", p.owner, c.Name)
					continue
				}
				nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (ps != nil && ps.RunAsNonRoot != nil && *ps.RunAsNonRoot)
				seccomp := (sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault) ||
					(ps != nil && ps.SeccompProfile != nil && ps.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault)
				for _, check := range []struct {
					what string
					ok   bool
				}{
					{"runAsNonRoot", nonRoot},
					{"seccomp RuntimeDefault", seccomp},
					{"allowPrivilegeEscalation: false", sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation},
					{"readOnlyRootFilesystem", sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem},
					{"capabilities drop ALL", sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL") && len(sc.Capabilities.Add) == 0},
					{"not privileged", sc.Privileged == nil || !*sc.Privileged},
				} {
					if !check.ok {
						t.Errorf("%s %s: want %s", p.owner, c.Name, check.what)
					}
				}
			}
		}
	})
}

func TestWorkerDeployment(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		for _, q := range qfetchContainers(t, o) {
			if q.binary != "worker" {
				continue
			}
			grace, err := time.ParseDuration(valueOf(t, "worker", q.env, "QFETCH_WORKER_GRACE"))
			if err != nil {
				t.Fatal(err)
			}
			// The worker's HTTP server gets 5s to shut down after the grace
			// period (cmd/worker); SIGKILL must come after both.
			need := grace + 5*time.Second
			tg := q.pod.spec.TerminationGracePeriodSeconds
			if tg == nil || time.Duration(*tg)*time.Second <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %v must exceed QFETCH_WORKER_GRACE %s + 5s", q.pod.owner, deref64(tg), grace)
			}
			if len(q.pod.spec.TopologySpreadConstraints) == 0 {
				t.Errorf("%s: no topology spread", q.pod.owner)
			}
		}
		if n := len(objectsOf[*appsv1.Deployment](o)); n == 0 {
			t.Fatal("no Deployment")
		}
	})
}

func TestPlannerCronJob(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		var found bool
		for _, cj := range objectsOf[*batchv1.CronJob](o) {
			c := cj.Spec.JobTemplate.Spec.Template.Spec.Containers
			if len(c) != 1 || binary(&c[0]) != "planner" {
				continue
			}
			found = true
			js := cj.Spec.JobTemplate.Spec
			for _, check := range []struct {
				what string
				ok   bool
			}{
				{"concurrencyPolicy Forbid", cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent},
				{"startingDeadlineSeconds", cj.Spec.StartingDeadlineSeconds != nil},
				{"history limits", cj.Spec.SuccessfulJobsHistoryLimit != nil && cj.Spec.FailedJobsHistoryLimit != nil},
				{"schedule in UTC", cj.Spec.TimeZone != nil && (*cj.Spec.TimeZone == "Etc/UTC" || *cj.Spec.TimeZone == "UTC")},
				{"backoffLimit", js.BackoffLimit != nil},
				{"activeDeadlineSeconds", js.ActiveDeadlineSeconds != nil},
				{"restartPolicy Never", js.Template.Spec.RestartPolicy == corev1.RestartPolicyNever},
			} {
				if !check.ok {
					t.Errorf("CronJob %s: want %s", cj.Name, check.what)
				}
			}
		}
		if !found {
			t.Error("no planner CronJob")
		}
	})
}

// TestScaledObject: KEDA scales the worker Deployment on the workers
// consumer's lag, from zero to ceil(QFETCH_MAX_IN_FLIGHT / slots).
func TestScaledObject(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		sos := objectsOf[*ScaledObject](o)
		if len(sos) != 1 {
			t.Fatalf("want one ScaledObject, got %d", len(sos))
		}
		so := sos[0]
		var worker *qfetchContainer
		for _, q := range qfetchContainers(t, o) {
			if q.binary == "worker" && q.pod.owner == "Deployment/"+so.Spec.ScaleTargetRef.Name {
				worker = &q
			}
		}
		if worker == nil {
			t.Fatalf("ScaledObject %s targets %q, not the worker Deployment", so.Name, so.Spec.ScaleTargetRef.Name)
		}
		atoi := func(name string) int {
			n, err := strconv.Atoi(valueOf(t, "worker", worker.env, name))
			if err != nil || n < 1 {
				t.Fatalf("%s: %v", name, err)
			}
			return n
		}
		maxInFlight, slots := atoi("QFETCH_MAX_IN_FLIGHT"), atoi("QFETCH_WORKER_SLOTS")
		want := int32(math.Ceil(float64(maxInFlight) / float64(slots)))
		if m := so.Spec.MaxReplicaCount; m == nil || *m != want {
			t.Errorf("maxReplicaCount %v, want ceil(%d/%d) = %d", deref(m), maxInFlight, slots, want)
		}
		if m := so.Spec.MinReplicaCount; m == nil || *m != 0 {
			t.Errorf("minReplicaCount %v, want 0", deref(m))
		}
		if len(so.Spec.Triggers) != 1 {
			t.Fatalf("want one trigger, got %d", len(so.Spec.Triggers))
		}
		tr := so.Spec.Triggers[0]
		md := tr.Metadata
		for k, want := range map[string]string{
			"stream":       msg.StreamBatches,
			"consumer":     msg.ConsumerWorkers,
			"lagThreshold": strconv.Itoa(slots),
		} {
			if md[k] != want {
				t.Errorf("trigger %s = %q, want %q", k, md[k], want)
			}
		}
		if tr.Type != "nats-jetstream" {
			t.Errorf("trigger type %q", tr.Type)
		}
		if _, _, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"]); err != nil {
			t.Errorf("natsServerMonitoringEndpoint %q: %v", md["natsServerMonitoringEndpoint"], err)
		}
	})
}

func deref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestNetworkPolicy: every planner, worker and exporter pod is isolated
// both ways; egress reaches DNS, NATS, the S3 endpoint and HTTPS, and
// Qualys for the programs that read QFETCH_QUALYS_URL, nothing else;
// ingress only the metrics port of the programs that serve one.
func TestNetworkPolicy(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		qcs := qfetchContainers(t, o)
		qualysURL := ""
		for _, q := range qcs {
			if q.binary == "worker" {
				qualysURL = valueOf(t, "worker", q.env, "QFETCH_QUALYS_URL")
			}
		}
		u, err := url.Parse(qualysURL)
		if err != nil || u.Host == "" {
			t.Fatalf("QFETCH_QUALYS_URL %q: %v", qualysURL, err)
		}
		if loopback(u.Hostname()) {
			// Qualys over http:// on loopback (config refuses http://
			// elsewhere): a forwarder in the pod takes it on, and its
			// upstream is where the traffic leaves the pod.
			upstream := ""
			for _, q := range qcs {
				if !reads(t, q.binary, "QFETCH_QUALYS_URL") {
					continue
				}
				up, err := forwarder(q.pod, u.Port())
				if err != nil {
					t.Fatalf("%s: QFETCH_QUALYS_URL %s: %v", q.pod.owner, qualysURL, err)
				}
				if upstream != "" && up != upstream {
					t.Fatalf("%s: forwards Qualys to %s, another pod to %s", q.pod.owner, up, upstream)
				}
				upstream = up
			}
			u = &url.URL{Scheme: u.Scheme, Host: upstream}
		}
		qualysPort := map[string]string{"https": "443", "http": "80"}[u.Scheme]
		if u.Port() != "" {
			qualysPort = u.Port()
		}
		// Qualys as pods of this overlay (the dev simulator): the pods its
		// Service selects.
		var qualysPods []pod
		for _, svc := range objectsOf[*corev1.Service](o) {
			if svc.Name == strings.Split(u.Hostname(), ".")[0] && len(svc.Spec.Selector) > 0 {
				for _, p := range o.pods() {
					if matchesAll(svc.Spec.Selector, p.labels) {
						qualysPods = append(qualysPods, p)
					}
				}
			}
		}
		portOf := func(hostport, def string) int32 {
			_, p, err := net.SplitHostPort(hostport)
			if err != nil {
				p = def
			}
			n, _ := strconv.Atoi(p)
			return int32(n)
		}
		for _, q := range qcs {
			var pols []*networkingv1.NetworkPolicy
			for _, np := range objectsOf[*networkingv1.NetworkPolicy](o) {
				if labelsMatch(&np.Spec.PodSelector, q.pod.labels) {
					pols = append(pols, np)
				}
			}
			if len(pols) != 1 {
				t.Errorf("%s: selected by %d NetworkPolicies, want 1", q.pod.owner, len(pols))
				continue
			}
			np := pols[0]
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
				t.Errorf("NetworkPolicy %s: want policyTypes Ingress and Egress", np.Name)
			}
			natsURL := strings.Split(valueOf(t, q.binary, q.env, "QFETCH_NATS_URL"), ",")[0]
			if !strings.Contains(natsURL, "://") {
				natsURL = "nats://" + natsURL
			}
			nu, err := url.Parse(natsURL)
			if err != nil {
				t.Fatal(err)
			}
			s3Default := "443"
			if valueOf(t, q.binary, q.env, "QFETCH_S3_SECURE") == "false" {
				s3Default = "80"
			}
			// 443: S3 over HTTPS, STS (IRSA), and Qualys.
			need := map[string]bool{
				"UDP/53": true, "TCP/443": true,
				fmt.Sprintf("TCP/%d", portOf(nu.Host, "4222")):                                              true,
				fmt.Sprintf("TCP/%d", portOf(valueOf(t, q.binary, q.env, "QFETCH_S3_ENDPOINT"), s3Default)): true,
			}
			readsQualys := reads(t, q.binary, "QFETCH_QUALYS_URL")
			if readsQualys {
				need[fmt.Sprintf("TCP/%d", portOf(u.Host, qualysPort))] = true
			}
			have := map[string]bool{}
			for _, r := range np.Spec.Egress {
				if len(r.Ports) == 0 {
					t.Errorf("NetworkPolicy %s: an egress rule without ports opens everything", np.Name)
				}
				for _, p := range r.Ports {
					proto := "TCP"
					if p.Protocol != nil {
						proto = string(*p.Protocol)
					}
					key := proto + "/" + p.Port.String()
					have[key] = true
					if !need[key] && key != "TCP/53" {
						t.Errorf("NetworkPolicy %s: egress %s is more than the %s needs", np.Name, key, q.binary)
					}
				}
				if readsQualys {
					continue
				}
				for _, peer := range r.To {
					for _, qp := range qualysPods {
						if peer.PodSelector != nil && peer.NamespaceSelector == nil && labelsMatch(peer.PodSelector, qp.labels) {
							t.Errorf("NetworkPolicy %s: the %s reaches Qualys (%s, %s); it needs no Qualys", np.Name, q.binary, u.Host, qp.owner)
						}
					}
				}
			}
			for k := range need {
				if !have[k] {
					t.Errorf("NetworkPolicy %s: no egress %s for %s", np.Name, k, q.binary)
				}
			}
			_, serves := listenVars[q.binary]
			var ingress []string
			for _, r := range np.Spec.Ingress {
				if len(r.Ports) == 0 {
					t.Errorf("NetworkPolicy %s: an ingress rule without ports opens everything", np.Name)
				}
				if err := fromMonitoringOnly(r.From); err != nil {
					t.Errorf("NetworkPolicy %s: ingress: %v", np.Name, err)
				}
				for _, p := range r.Ports {
					ingress = append(ingress, p.Port.String())
					if !serves || !hasPort(q.c, *p.Port) {
						t.Errorf("NetworkPolicy %s: ingress %s is not the %s's metrics port", np.Name, p.Port.String(), q.binary)
					}
				}
			}
			if serves && len(ingress) == 0 {
				t.Errorf("NetworkPolicy %s: metrics port not reachable", np.Name)
			}
		}
	})
}

// monitoringNamespace is where Prometheus runs: the only namespace that
// may reach the metrics port (#17.11).
const monitoringNamespace = "monitoring"

// fromMonitoringOnly: an ingress rule's peers are the monitoring namespace,
// by the name label the API server sets, and nothing else (no address
// block, no other namespace, not "from anywhere").
func fromMonitoringOnly(from []networkingv1.NetworkPolicyPeer) error {
	if len(from) == 0 {
		return fmt.Errorf("open to every source; want the %s namespace only", monitoringNamespace)
	}
	for _, p := range from {
		ns := p.NamespaceSelector
		switch {
		case p.IPBlock != nil:
			return fmt.Errorf("an ipBlock peer; want the %s namespace only", monitoringNamespace)
		case ns == nil:
			return fmt.Errorf("a peer in qfetch's own namespace; want the %s namespace only", monitoringNamespace)
		case len(ns.MatchExpressions) > 0 || len(ns.MatchLabels) != 1 || ns.MatchLabels["kubernetes.io/metadata.name"] != monitoringNamespace:
			return fmt.Errorf("namespaceSelector %v; want kubernetes.io/metadata.name: %s alone", ns, monitoringNamespace)
		}
	}
	return nil
}

func loopback(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}

// forwarder finds the container of p that listens on port (a loopback
// Qualys URL's) and returns its UPSTREAM, host:port.
func forwarder(p pod, port string) (string, error) {
	n, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("a loopback URL needs an explicit port, got %q", port)
	}
	for _, c := range containers(p.spec) {
		if binary(c) != "" || !hasPort(c, intstr.FromInt32(int32(n))) {
			continue
		}
		for _, e := range c.Env {
			if e.Name == "UPSTREAM" && e.Value != "" {
				return e.Value, nil
			}
		}
		return "", fmt.Errorf("container %s listens on %d but names no UPSTREAM", c.Name, n)
	}
	return "", fmt.Errorf("no container of the pod listens on port %d to forward it", n)
}

// TestProdImagesByDigest (#17.11): in prod every container runs an image
// by digest (name@sha256:<64 hex>): a tag can be moved to other bytes.
func TestProdImagesByDigest(t *testing.T) {
	o := build(t, "prod")
	n := 0
	for _, p := range o.pods() {
		for _, c := range containers(p.spec) {
			n++
			if err := imageByDigest(c.Image); err != nil {
				t.Errorf("%s %s: image %q: %v", p.owner, c.Name, c.Image, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no containers in prod")
	}
}

var digestRE = regexp.MustCompile(`^[^@\s]+@sha256:[0-9a-f]{64}$`)

func imageByDigest(image string) error {
	if !digestRE.MatchString(image) {
		return fmt.Errorf("not pinned by digest (want name@sha256:<64 hex>; overlays/prod kustomization.yaml images:)")
	}
	return nil
}

func TestImageByDigest(t *testing.T) {
	for _, tc := range []struct {
		image string
		ok    bool
	}{
		{"ghcr.io/qfetch/qfetch@sha256:" + strings.Repeat("ab", 32), true},
		{"ghcr.io/qfetch/qfetch:0.1.0@sha256:" + strings.Repeat("0", 64), true},
		{"ghcr.io/qfetch/qfetch:0.1.0", false},
		{"ghcr.io/qfetch/qfetch@sha256:ab", false},
		{"ghcr.io/qfetch/qfetch@sha512:" + strings.Repeat("ab", 64), false},
		{"x@sha256:" + strings.Repeat("AB", 32), false},
	} {
		if err := imageByDigest(tc.image); (err == nil) != tc.ok {
			t.Errorf("imageByDigest(%q) = %v, want ok=%v", tc.image, err, tc.ok)
		}
	}
}

// TestExporterServiceAccount (#17.11): the exporter runs under its own
// ServiceAccount, without a token, and where an overlay gives accounts a
// cloud role, the exporter's is its own, not the planner's or workers'.
func TestExporterServiceAccount(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		accounts := map[string]*corev1.ServiceAccount{}
		for _, sa := range objectsOf[*corev1.ServiceAccount](o) {
			accounts[sa.Name] = sa
		}
		byBinary := map[string]map[string]bool{}
		for _, q := range qfetchContainers(t, o) {
			name := q.pod.spec.ServiceAccountName
			if name == "" {
				name = "default"
			}
			if byBinary[q.binary] == nil {
				byBinary[q.binary] = map[string]bool{}
			}
			byBinary[q.binary][name] = true
			sa := accounts[name]
			if sa == nil {
				t.Errorf("%s: ServiceAccount %q is not in the overlay", q.pod.owner, name)
				continue
			}
			if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount %s: automountServiceAccountToken must be false", name)
			}
		}
		roles := func(binary string) map[string]bool {
			out := map[string]bool{}
			for name := range byBinary[binary] {
				if sa := accounts[name]; sa != nil {
					out[sa.Annotations["eks.amazonaws.com/role-arn"]] = true
				}
			}
			return out
		}
		for ex := range byBinary["exporter"] {
			for _, other := range []string{"planner", "worker"} {
				if byBinary[other][ex] {
					t.Errorf("the exporter shares ServiceAccount %s with the %s", ex, other)
				}
			}
		}
		for role := range roles("exporter") {
			for _, other := range []string{"planner", "worker"} {
				if role != "" && roles(other)[role] {
					t.Errorf("the exporter's IAM role %s is the %s's too", role, other)
				}
			}
		}
		if o.name == "prod" {
			for _, b := range []string{"planner", "worker", "exporter"} {
				if r := roles(b); len(r) != 1 || r[""] {
					t.Errorf("prod: the %s's ServiceAccount has IAM role(s) %v, want one", b, r)
				}
			}
		}
	})
}

// TestExporterDeployment: one always-on exporter per overlay, which KEDA
// does not scale and a rollout never leaves absent, running `qfetch
// exporter` with the ConfigMap's settings.
func TestExporterDeployment(t *testing.T) {
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		var deps []*appsv1.Deployment
		for _, d := range objectsOf[*appsv1.Deployment](o) {
			for i := range d.Spec.Template.Spec.Containers {
				if binary(&d.Spec.Template.Spec.Containers[i]) == "exporter" {
					deps = append(deps, d)
					break
				}
			}
		}
		if len(deps) != 1 {
			t.Fatalf("%d Deployments run `qfetch exporter`, want 1", len(deps))
		}
		d := deps[0]
		if r := d.Spec.Replicas; r == nil || *r != 1 {
			t.Errorf("Deployment %s: replicas %v, want 1", d.Name, deref(r))
		}
		if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
			ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxUnavailable.Type != intstr.Int {
			t.Errorf("Deployment %s: want a RollingUpdate with maxUnavailable 0 (no gap in the series)", d.Name)
		}
		if cs := d.Spec.Template.Spec.Containers; len(cs) != 1 || !slices.Equal(cs[0].Args, []string{"exporter"}) {
			t.Errorf("Deployment %s: want one container with args [exporter]", d.Name)
		}
		for _, so := range objectsOf[*ScaledObject](o) {
			if so.Spec.ScaleTargetRef.Name == d.Name {
				t.Errorf("ScaledObject %s scales the exporter: it would go to zero with the workers", so.Name)
			}
		}
		// The reporter stops at SIGTERM and the HTTP server gets 5s.
		if tg := d.Spec.Template.Spec.TerminationGracePeriodSeconds; tg != nil && *tg <= 5 {
			t.Errorf("Deployment %s: terminationGracePeriodSeconds %d leaves the server no 5s", d.Name, *tg)
		}
	})
}

// TestExporterWithoutQualys: `qfetch exporter` reads no Qualys setting, and
// its pod can reach no Secret key that planner or worker read a Qualys
// setting from (the NetworkPolicy keeps Qualys out of reach: TestNetworkPolicy).
func TestExporterWithoutQualys(t *testing.T) {
	for _, v := range vars(t, "exporter") {
		if strings.HasPrefix(v.Name, config.Prefix+"_QUALYS_") {
			t.Errorf("the exporter reads %s", v.Name)
		}
	}
	forEachOverlay(t, func(t *testing.T, o *overlay) {
		type key struct{ secret, key string }
		qualysKeys := map[key]string{} // -> the variable that reads it
		qcs := qfetchContainers(t, o)
		for _, q := range qcs {
			if q.binary == "exporter" {
				continue
			}
			for _, e := range q.c.Env {
				if !strings.HasPrefix(e.Name, config.Prefix+"_QUALYS_") {
					continue
				}
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					qualysKeys[key{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}] = e.Name
				}
			}
			for name, v := range q.env {
				if strings.HasPrefix(name, config.Prefix+"_QUALYS_") && strings.HasSuffix(name, "_FILE") {
					if s, k, err := o.secretFileRef(q.pod.spec, q.c, v.value); err == nil {
						qualysKeys[key{s, k}] = name
					}
				}
			}
		}
		if len(qualysKeys) == 0 {
			t.Fatal("found no Secret key the planner or worker reads Qualys credentials from")
		}
		for _, q := range qcs {
			if q.binary != "exporter" {
				continue
			}
			for name, v := range q.env {
				if strings.HasPrefix(name, config.Prefix+"_QUALYS_") && v.source != "configmap" {
					t.Errorf("%s: the exporter gets %s (%s)", q.pod.owner, name, v.source)
				}
			}
			// Every Secret key the pod can reach.
			reach := map[key]bool{}
			all := func(secret string) {
				if s := o.secret(secret); s != nil {
					for k := range s.Data {
						reach[key{secret, k}] = true
					}
				}
			}
			for _, c := range containers(q.pod.spec) {
				for _, ef := range c.EnvFrom {
					if ef.SecretRef != nil {
						all(ef.SecretRef.Name)
					}
				}
				for _, e := range c.Env {
					if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
						reach[key{e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key}] = true
					}
				}
			}
			secretVolume := func(name string, items []corev1.KeyToPath) {
				if len(items) == 0 {
					all(name)
				}
				for _, it := range items {
					reach[key{name, it.Key}] = true
				}
			}
			for _, v := range q.pod.spec.Volumes {
				if v.Secret != nil {
					secretVolume(v.Secret.SecretName, v.Secret.Items)
				}
				if v.Projected != nil {
					for _, src := range v.Projected.Sources {
						if src.Secret != nil {
							secretVolume(src.Secret.Name, src.Secret.Items)
						}
					}
				}
			}
			for k := range reach {
				if v, ok := qualysKeys[k]; ok {
					t.Errorf("%s: the exporter can read Secret %s key %s (%s)", q.pod.owner, k.secret, k.key, v)
				}
			}
		}
	})
}

func deref64(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}
