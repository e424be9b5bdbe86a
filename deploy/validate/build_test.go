package validate

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	k8sDir   = "../k8s"
	repoRoot = "../.."
	// qfetchImage is the image that carries planner, worker and qfetch.
	qfetchImage = "ghcr.io/qfetch/qfetch"
)

// overlayNames are the overlays an operator may apply; every check runs on each.
var overlayNames = []string{"dev", "prod"}

// object is one built resource, decoded into its typed struct.
type object struct {
	gvk  schema.GroupVersionKind
	name string
	v    runtime.Object
}

type overlay struct {
	name string
	objs []object
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

var scaledObjectGVK = schema.GroupVersionKind{Group: "keda.sh", Version: "v1alpha1", Kind: "ScaledObject"}

func (s *ScaledObject) DeepCopyObject() runtime.Object {
	c := *s
	return &c
}

var (
	builtMu sync.Mutex
	built   = map[string]*overlay{}
)

// build runs kustomize on an overlay once per test binary. It works on a
// copy of deploy/k8s in which each overlay's git-ignored file with an
// .example beside it (secret.env, the NATS seeds and CA) is its example:
// the build is what an operator gets after the README's `cp`, and an
// operator's real values are never read by a test.
func build(t *testing.T, name string) *overlay {
	t.Helper()
	return buildDir(t, path.Join("overlays", name), name)
}

// buildBase builds the base alone, for checks of what every overlay starts
// from.
func buildBase(t *testing.T) *overlay {
	t.Helper()
	return buildDir(t, "base", "base")
}

func buildDir(t *testing.T, rel, name string) *overlay {
	t.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if o := built[rel]; o != nil {
		return o
	}
	dir := copyTree(t, k8sDir)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", rel, err)
	}
	o := &overlay{name: name}
	for _, r := range m.Resources() {
		gvk := schema.FromAPIVersionAndKind(r.GetApiVersion(), r.GetKind())
		data, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s %s: %v", gvk.Kind, r.GetName(), err)
		}
		v, err := decodeStrict(gvk, data)
		if err != nil {
			t.Fatalf("%s: %s %s: %v", rel, gvk.Kind, r.GetName(), err)
		}
		o.objs = append(o.objs, object{gvk: gvk, name: r.GetName(), v: v})
	}
	built[rel] = o
	return o
}

// decodeStrict decodes into the kind's typed struct the way the API server's
// strict field validation does: unknown and duplicate fields are errors,
// names match case-sensitively.
func decodeStrict(gvk schema.GroupVersionKind, data []byte) (runtime.Object, error) {
	var v runtime.Object
	if gvk == scaledObjectGVK {
		v = &ScaledObject{}
	} else {
		var err error
		if v, err = scheme.New(gvk); err != nil {
			return nil, fmt.Errorf("no typed struct for %s: add its scheme or a checked-in type", gvk)
		}
	}
	strict, err := sigsjson.UnmarshalStrict(data, v)
	if err != nil {
		return nil, err
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("strict decoding: %v", strict)
	}
	return v, nil
}

func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		if _, err := os.Stat(p + ".example"); err == nil {
			return nil // the operator's values (secret.env, NATS seeds): never read
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if name, ok := strings.CutSuffix(d.Name(), ".example"); ok {
			out = filepath.Join(filepath.Dir(out), name)
		}
		return os.WriteFile(out, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func (o *overlay) kinds() string {
	n := map[string]int{}
	for _, ob := range o.objs {
		n[ob.gvk.Kind]++
	}
	var parts []string
	for k, c := range n {
		parts = append(parts, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func objectsOf[T runtime.Object](o *overlay) []T {
	var out []T
	for _, ob := range o.objs {
		if v, ok := ob.v.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (o *overlay) configMap(name string) *corev1.ConfigMap {
	for _, cm := range objectsOf[*corev1.ConfigMap](o) {
		if cm.Name == name {
			return cm
		}
	}
	return nil
}

func (o *overlay) secret(name string) *corev1.Secret {
	for _, s := range objectsOf[*corev1.Secret](o) {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// pod is a pod template found in a workload.
type pod struct {
	owner  string // Kind/name
	labels map[string]string
	spec   *corev1.PodSpec
}

func (o *overlay) pods() []pod {
	var out []pod
	add := func(owner string, t *corev1.PodTemplateSpec) {
		out = append(out, pod{owner: owner, labels: t.Labels, spec: &t.Spec})
	}
	for _, ob := range o.objs {
		switch v := ob.v.(type) {
		case *appsv1.Deployment:
			add("Deployment/"+v.Name, &v.Spec.Template)
		case *appsv1.StatefulSet:
			add("StatefulSet/"+v.Name, &v.Spec.Template)
		case *appsv1.DaemonSet:
			add("DaemonSet/"+v.Name, &v.Spec.Template)
		case *batchv1.Job:
			add("Job/"+v.Name, &v.Spec.Template)
		case *batchv1.CronJob:
			add("CronJob/"+v.Name, &v.Spec.JobTemplate.Spec.Template)
		case *corev1.Pod:
			out = append(out, pod{owner: "Pod/" + v.Name, labels: v.Labels, spec: &v.Spec})
		}
	}
	return out
}

func containers(p *corev1.PodSpec) []*corev1.Container {
	var out []*corev1.Container
	for i := range p.InitContainers {
		out = append(out, &p.InitContainers[i])
	}
	for i := range p.Containers {
		out = append(out, &p.Containers[i])
	}
	return out
}

// binary names the qfetch program a container runs: "planner", "worker",
// "exporter" (`qfetch exporter`), "qfetch" (another qfetch subcommand), or
// "" for other images.
func binary(c *corev1.Container) string {
	if !strings.HasPrefix(c.Image, qfetchImage+":") && !strings.HasPrefix(c.Image, qfetchImage+"@") {
		return ""
	}
	args := c.Args
	name := "qfetch" // the image's ENTRYPOINT
	if len(c.Command) > 0 {
		name, args = path.Base(c.Command[0]), append(slices.Clone(c.Command[1:]), c.Args...)
	}
	if name == "qfetch" && len(args) > 0 && args[0] == "exporter" {
		return "exporter"
	}
	return name
}

// envVal is one resolved environment variable.
type envVal struct {
	value  string
	source string // "literal", "configmap", "secret"
}

// env resolves a container's environment as the kubelet would: envFrom
// first, then env, later entries winning; references must resolve.
func (o *overlay) env(c *corev1.Container) (map[string]envVal, error) {
	out := map[string]envVal{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := o.configMap(ef.ConfigMapRef.Name)
			if cm == nil {
				return nil, fmt.Errorf("envFrom: no ConfigMap %q", ef.ConfigMapRef.Name)
			}
			for k, v := range cm.Data {
				out[ef.Prefix+k] = envVal{v, "configmap"}
			}
		case ef.SecretRef != nil:
			s := o.secret(ef.SecretRef.Name)
			if s == nil {
				return nil, fmt.Errorf("envFrom: no Secret %q", ef.SecretRef.Name)
			}
			for k, v := range s.Data {
				out[ef.Prefix+k] = envVal{string(v), "secret"}
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = envVal{e.Value, "literal"}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			cm := o.configMap(r.Name)
			if cm == nil {
				return nil, fmt.Errorf("%s: no ConfigMap %q", e.Name, r.Name)
			}
			v, ok := cm.Data[r.Key]
			if !ok {
				return nil, fmt.Errorf("%s: ConfigMap %q has no key %q", e.Name, r.Name, r.Key)
			}
			out[e.Name] = envVal{v, "configmap"}
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			s := o.secret(r.Name)
			if s == nil {
				return nil, fmt.Errorf("%s: no Secret %q", e.Name, r.Name)
			}
			v, ok := s.Data[r.Key]
			if !ok {
				return nil, fmt.Errorf("%s: Secret %q has no key %q", e.Name, r.Name, r.Key)
			}
			out[e.Name] = envVal{string(v), "secret"}
		default:
			out[e.Name] = envVal{"", "fieldref"}
		}
	}
	return out, nil
}

// secretFile reads the Secret key a file path inside the container reads.
func (o *overlay) secretFile(p *corev1.PodSpec, c *corev1.Container, file string) ([]byte, error) {
	name, key, err := o.secretFileRef(p, c, file)
	if err != nil {
		return nil, err
	}
	s := o.secret(name)
	if s == nil {
		return nil, fmt.Errorf("%s: no Secret %q", file, name)
	}
	b, ok := s.Data[key]
	if !ok {
		return nil, fmt.Errorf("%s: Secret %q has no key %q", file, name, key)
	}
	return b, nil
}

// secretFileRef finds the Secret and key a file path inside the container
// reads, through a volume mount of a Secret volume.
func (o *overlay) secretFileRef(p *corev1.PodSpec, c *corev1.Container, file string) (secret, key string, err error) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue
		}
		for _, v := range p.Volumes {
			if v.Name != m.Name {
				continue
			}
			if v.Secret == nil {
				return "", "", fmt.Errorf("%s is on volume %q, which is not a Secret", file, v.Name)
			}
			key := rel
			if len(v.Secret.Items) > 0 {
				// With items, only the listed keys are there.
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
				if key == "" {
					return "", "", fmt.Errorf("%s: volume %q lists no item at %s", file, v.Name, rel)
				}
			}
			return v.Secret.SecretName, key, nil
		}
		return "", "", fmt.Errorf("%s: mount %q has no volume", file, m.Name)
	}
	return "", "", fmt.Errorf("%s is on no volume mount", file)
}

func labelsMatch(sel *metav1.LabelSelector, labels map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return !s.Empty() && s.Matches(klabels.Set(labels))
}

func TestOverlaysBuildAndDecodeStrictly(t *testing.T) {
	for _, name := range overlayNames {
		t.Run(name, func(t *testing.T) {
			o := build(t, name)
			if len(o.objs) == 0 {
				t.Fatal("no objects")
			}
			t.Logf("overlays/%s: %d objects: %s", name, len(o.objs), o.kinds())
		})
	}
}

// TestStrictDecodingRejects keeps the strict decoder honest: a misspelt
// field must fail in both a Kubernetes kind and the checked-in KEDA type.
func TestStrictDecodingRejects(t *testing.T) {
	for _, tc := range []struct {
		gvk  schema.GroupVersionKind
		json string
	}{
		{appsv1.SchemeGroupVersion.WithKind("Deployment"), `{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replica":1}}`},
		{appsv1.SchemeGroupVersion.WithKind("Deployment"), `{"apiVersion":"apps/v1","kind":"Deployment","spec":{"Replicas":1}}`},
		{scaledObjectGVK, `{"apiVersion":"keda.sh/v1alpha1","kind":"ScaledObject","spec":{"maxReplicas":1}}`},
		{monitoringv1.SchemeGroupVersion.WithKind("PodMonitor"), `{"apiVersion":"monitoring.coreos.com/v1","kind":"PodMonitor","spec":{"endpoints":[]}}`},
		{monitoringv1.SchemeGroupVersion.WithKind("PrometheusRule"), `{"apiVersion":"monitoring.coreos.com/v1","kind":"PrometheusRule","spec":{"groups":[{"name":"g","rules":[{"alert":"A","expr":"up","fore":"5m"}]}]}}`},
	} {
		if _, err := decodeStrict(tc.gvk, []byte(tc.json)); err == nil {
			t.Errorf("%s %s: decoded without error", tc.gvk.Kind, tc.json)
		}
	}
}
