package validate

// An offline rendering of the parts of the official NATS Helm chart that
// nats-helm-values.yaml sets: the server config (the ConfigMap's nats.conf),
// the PodDisruptionBudget and the pod template's scheduling. No chart is
// downloaded: the templates are mirrored here key by key, from nats-io/k8s
// helm/charts/nats at 957650f (chart 2.14.2):
//
//   - templates/_helpers.tpl "nats.defaultValues": the chart's values.yaml
//     under the user's (Helm's coalescing: maps merge, the user's value
//     wins); names default to the release's full name ("nats" for release
//     nats), the headless Service to <name>-headless.
//   - files/config/config.yaml: server_name << $SERVER_NAME >>,
//     lame_duck_grace_period 10s, lame_duck_duration 30s, pid_file, port;
//     tls (files/config/tls.yaml) when config.nats.tls.enabled; cluster
//     (files/config/cluster.yaml) when config.cluster.enabled; http_port
//     (https_port with monitor TLS) when config.monitor.enabled; prof_port;
//     jetstream (files/config/jetstream.yaml) when config.jetstream.enabled;
//     then config.merge over the whole ("nats.loadMergePatch": sprig's
//     mergeOverwrite, then the JSON patch).
//   - files/config/cluster.yaml: name = the StatefulSet's name, port,
//     no_advertise, routes = <tls|nats>://<sts>-<i>.<headless>[.<ns>.svc.
//     <domain> with routeURLs.useFQDN]:<port> for i < replicas, tls.
//   - files/config/tls.yaml: cert_file/key_file = <dir>/<cert|key> when a
//     secretName is set; ca_file from tlsCA when enabled; then tls.merge.
//   - files/config/jetstream.yaml: max_memory_store << maxSize >> (0 when the
//     memory store is disabled), store_dir, max_file_store << maxSize >> or
//     << pvc.size >> (0 when the file store is disabled).
//   - "nats.formatConfig": pretty JSON with sorted keys and no HTML escaping,
//     a "…$include": "x" entry becomes `include x;`, and "<< v >>" becomes
//     the bare v (sizes and variables the server parses itself).
//   - files/pod-disruption-budget.yaml: maxUnavailable 1 and the selector
//     labels; files/stateful-set/pod-template.yaml: topologySpreadConstraints
//     from the map (topologyKey and the selector labels added),
//     terminationGracePeriodSeconds 60, then podTemplate.merge.
//
// A key the renderer does not mirror (leafnodes, gateways, websocket, MQTT,
// the resolver, JSON patches on the config) fails the test rather than
// being rendered wrong.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	sigsyaml "sigs.k8s.io/yaml"
)

const (
	natsValuesFile = prodNATS + "/nats-helm-values.yaml"
	// The release the README installs: helm upgrade --install nats … -n nats.
	natsRelease   = "nats"
	natsNamespace = "nats"
)

// natsChartDefaults are the chart's values.yaml (2.14.2) for the keys the
// renderer reads, verbatim in meaning.
const natsChartDefaults = `
tlsCA:
  enabled: false
  configMapName:
  secretName:
  dir: /etc/nats-ca-cert
  key: ca.crt
config:
  cluster:
    enabled: false
    port: 6222
    replicas: 3
    noAdvertise: true
    routeURLs:
      user:
      password:
      useFQDN: false
      k8sClusterDomain: cluster.local
    tls:
      enabled: false
      secretName:
      dir: /etc/nats-certs/cluster
      cert: tls.crt
      key: tls.key
      merge: {}
      patch: []
    merge: {}
    patch: []
  jetstream:
    enabled: false
    fileStore:
      enabled: true
      dir: /data
      pvc:
        enabled: true
        size: 10Gi
        storageClassName:
      maxSize:
    memoryStore:
      enabled: false
      maxSize: 1Gi
    merge: {}
    patch: []
  nats:
    port: 4222
    tls:
      enabled: false
      secretName:
      dir: /etc/nats-certs/nats
      cert: tls.crt
      key: tls.key
      merge: {}
      patch: []
  leafnodes: {enabled: false}
  websocket: {enabled: false}
  mqtt: {enabled: false}
  gateway: {enabled: false}
  monitor:
    enabled: true
    port: 8222
    tls:
      enabled: false
  profiling:
    enabled: false
    port: 65432
  resolver: {enabled: false}
  serverNamePrefix: ""
  merge: {}
  patch: []
statefulSet: {merge: {}, patch: [], name:}
podTemplate:
  topologySpreadConstraints: {}
  merge: {}
  patch: []
headlessService: {name:}
podDisruptionBudget: {enabled: true, merge: {}, patch: [], name:}
`

type values = map[string]any

// natsValues are the chart's defaults under nats-helm-values.yaml, as Helm
// coalesces them, with the names "nats.defaultValues" fills in.
func natsValues(t *testing.T) values {
	t.Helper()
	var def, user values
	if err := sigsyaml.Unmarshal([]byte(natsChartDefaults), &def); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(natsValuesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigsyaml.Unmarshal(b, &user); err != nil {
		t.Fatal(err)
	}
	v := coalesce(def, user)
	// fullname: the release name when it contains the chart's name.
	full := natsRelease
	for _, k := range []string{"statefulSet", "podDisruptionBudget"} {
		m := get[values](v, k)
		if m["name"] == nil {
			m["name"] = full
		}
	}
	if hs := get[values](v, "headlessService"); hs["name"] == nil {
		hs["name"] = full + "-headless"
	}
	return v
}

// coalesce is Helm's merge of user values over the chart's: maps merge
// key by key, any other user value replaces the default, null deletes.
func coalesce(def, user values) values {
	out := maps.Clone(def)
	for k, uv := range user {
		dm, dok := out[k].(values)
		um, uok := uv.(values)
		switch {
		case uv == nil:
			delete(out, k)
		case dok && uok:
			out[k] = coalesce(dm, um)
		default:
			out[k] = uv
		}
	}
	return out
}

// mergeOverwrite is sprig's (mergo with override): src's maps merge into
// dst's, and src's other non-empty values replace dst's.
func mergeOverwrite(dst, src values) values {
	out := maps.Clone(dst)
	if out == nil {
		out = values{}
	}
	for k, sv := range src {
		dm, dok := out[k].(values)
		sm, sok := sv.(values)
		switch {
		case dok && sok:
			out[k] = mergeOverwrite(dm, sm)
		case sv == nil || reflect.ValueOf(sv).IsZero():
			if _, ok := out[k]; !ok {
				out[k] = sv
			}
		default:
			out[k] = sv
		}
	}
	return out
}

// get walks a path of map keys; a missing key gives T's zero value.
func get[T any](v values, path ...string) T {
	var cur any = v
	for _, k := range path {
		m, _ := cur.(values)
		cur = m[k]
	}
	out, _ := cur.(T)
	return out
}

func str(v values, path ...string) string {
	switch x := get[any](v, path...).(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

// loadMergePatch is "nats.loadMergePatch" for a section without patches.
func loadMergePatch(t *testing.T, doc, section values, what string) values {
	t.Helper()
	if p := get[[]any](section, "patch"); len(p) > 0 {
		t.Fatalf("%s: JSON patches are not mirrored by this renderer; use merge", what)
	}
	return mergeOverwrite(doc, get[values](section, "merge"))
}

// tlsBlock is files/config/tls.yaml.
func tlsBlock(t *testing.T, v, tlsv values, what string) values {
	doc := values{}
	if str(tlsv, "secretName") != "" {
		dir := strings.TrimSuffix(str(tlsv, "dir"), "/")
		doc["cert_file"] = dir + "/" + orDefault(str(tlsv, "cert"), "tls.crt")
		doc["key_file"] = dir + "/" + orDefault(str(tlsv, "key"), "tls.key")
	}
	if ca := get[values](v, "tlsCA"); get[bool](ca, "enabled") && (str(ca, "configMapName") != "" || str(ca, "secretName") != "") {
		doc["ca_file"] = strings.TrimSuffix(str(ca, "dir"), "/") + "/" + orDefault(str(ca, "key"), "ca.crt")
	}
	return loadMergePatch(t, doc, tlsv, what)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// renderNATSConfig is the config map the chart makes of v, before
// formatting: files/config/config.yaml and the files it includes.
func renderNATSConfig(t *testing.T, v values) values {
	t.Helper()
	c := get[values](v, "config")
	for _, k := range []string{"leafnodes", "websocket", "mqtt", "gateway", "resolver"} {
		if get[bool](c, k, "enabled") {
			t.Fatalf("config.%s is enabled: this renderer does not mirror it", k)
		}
	}
	doc := values{
		"server_name":            "<< $SERVER_NAME >>",
		"lame_duck_grace_period": "10s",
		"lame_duck_duration":     "30s",
		"pid_file":               "/var/run/nats/nats.pid",
		"port":                   get[float64](c, "nats", "port"),
	}
	if get[bool](c, "nats", "tls", "enabled") {
		doc["tls"] = tlsBlock(t, v, get[values](c, "nats", "tls"), "config.nats.tls")
	}
	if cl := get[values](c, "cluster"); get[bool](cl, "enabled") {
		sts := str(v, "statefulSet", "name")
		proto := "nats"
		if get[bool](cl, "tls", "enabled") {
			proto = "tls"
		}
		if str(cl, "routeURLs", "user") != "" && str(cl, "routeURLs", "password") != "" {
			t.Fatal("config.cluster.routeURLs user/password: not mirrored (routes authenticate by TLS here)")
		}
		domain := str(v, "headlessService", "name")
		if get[bool](cl, "routeURLs", "useFQDN") {
			domain = fmt.Sprintf("%s.%s.svc.%s", domain, natsNamespace, str(cl, "routeURLs", "k8sClusterDomain"))
		}
		port := int(get[float64](cl, "port"))
		var routes []any
		for i := range int(get[float64](cl, "replicas")) {
			routes = append(routes, fmt.Sprintf("%s://%s-%d.%s:%d", proto, sts, i, domain, port))
		}
		cdoc := values{"name": sts, "port": float64(port), "no_advertise": get[bool](cl, "noAdvertise"), "routes": routes}
		if get[bool](cl, "tls", "enabled") {
			cdoc["tls"] = tlsBlock(t, v, get[values](cl, "tls"), "config.cluster.tls")
		}
		doc["cluster"] = loadMergePatch(t, cdoc, cl, "config.cluster")
	}
	if m := get[values](c, "monitor"); get[bool](m, "enabled") {
		if get[bool](m, "tls", "enabled") {
			doc["https_port"] = get[float64](m, "port")
		} else {
			doc["http_port"] = get[float64](m, "port")
		}
	}
	if get[bool](c, "profiling", "enabled") {
		doc["prof_port"] = get[float64](c, "profiling", "port")
	}
	if js := get[values](c, "jetstream"); get[bool](js, "enabled") {
		jdoc := values{}
		if ms := get[values](js, "memoryStore"); ms != nil {
			if get[bool](ms, "enabled") {
				if s := str(ms, "maxSize"); s != "" {
					jdoc["max_memory_store"] = "<< " + s + " >>"
				}
			} else {
				jdoc["max_memory_store"] = float64(0)
			}
		}
		if fs := get[values](js, "fileStore"); fs != nil {
			if get[bool](fs, "enabled") {
				jdoc["store_dir"] = str(fs, "dir")
				if s := str(fs, "maxSize"); s != "" {
					jdoc["max_file_store"] = "<< " + s + " >>"
				} else if get[bool](fs, "pvc", "enabled") {
					jdoc["max_file_store"] = "<< " + str(fs, "pvc", "size") + " >>"
				}
			} else {
				jdoc["max_file_store"] = float64(0)
			}
		}
		doc["jetstream"] = loadMergePatch(t, jdoc, js, "config.jetstream")
	}
	return loadMergePatch(t, doc, c, "config")
}

var (
	includeRE = regexp.MustCompile(`".*\$include": "(.*)",?`)
	rawRE     = regexp.MustCompile(`"<<\s+(.*?)\s+>>"`)
)

// formatNATSConfig is "nats.formatConfig": the nats.conf text of the
// chart's ConfigMap.
func formatNATSConfig(t *testing.T, doc values) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // toPrettyRawJson undoes the \u003c, \u003e, \u0026
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(b.String(), "\n")
	s = includeRE.ReplaceAllString(s, "include ${1};")
	return rawRE.ReplaceAllString(s, "${1}")
}

// natsSize reads a chart size (8Gi, 256Mi) as bytes.
func natsSize(t *testing.T, s string) int64 {
	t.Helper()
	q, err := resource.ParseQuantity(s)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	return q.Value()
}

// unraw strips the chart's << >> from a rendered value.
func unraw(v any) string {
	s := fmt.Sprint(v)
	s = strings.TrimPrefix(s, "<< ")
	return strings.TrimSuffix(s, " >>")
}

func natsSelectorLabels() map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      "nats",
		"app.kubernetes.io/instance":  natsRelease,
		"app.kubernetes.io/component": "nats",
	}
}

// renderNATSPDB is files/pod-disruption-budget.yaml with its merge.
func renderNATSPDB(t *testing.T, v values) *policyv1.PodDisruptionBudget {
	t.Helper()
	pdb := get[values](v, "podDisruptionBudget")
	if !get[bool](pdb, "enabled") {
		return nil
	}
	doc := values{
		"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
		"metadata": values{"name": str(pdb, "name")},
		"spec": values{
			"maxUnavailable": float64(1),
			"selector":       values{"matchLabels": toValues(natsSelectorLabels())},
		},
	}
	doc = loadMergePatch(t, doc, pdb, "podDisruptionBudget")
	out := &policyv1.PodDisruptionBudget{}
	decodeInto(t, doc, out)
	return out
}

// renderNATSPodSpec is the scheduling part of
// files/stateful-set/pod-template.yaml with podTemplate.merge.
func renderNATSPodSpec(t *testing.T, v values) *corev1.PodSpec {
	t.Helper()
	pt := get[values](v, "podTemplate")
	spec := values{"terminationGracePeriodSeconds": float64(60)}
	if tsc := get[values](pt, "topologySpreadConstraints"); len(tsc) > 0 {
		var list []any
		for _, k := range slices.Sorted(maps.Keys(tsc)) { // Go templates range maps in key order
			c := mergeOverwrite(values{"topologyKey": k, "labelSelector": values{"matchLabels": toValues(natsSelectorLabels())}}, get[values](tsc, k))
			list = append(list, c)
		}
		spec["topologySpreadConstraints"] = list
	}
	doc := loadMergePatch(t, values{"spec": spec}, values{"merge": get[values](pt, "merge")}, "podTemplate")
	out := &corev1.PodSpec{}
	decodeInto(t, get[values](doc, "spec"), out)
	return out
}

func toValues(m map[string]string) values {
	out := values{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// decodeInto decodes a rendered document strictly into its Kubernetes type.
func decodeInto(t *testing.T, doc values, out any) {
	t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigsyaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("rendered %T does not decode strictly: %v", out, err)
	}
}

// prodNATSEnv is the prod overlay's NATS settings, as its pods get them.
func prodNATSEnv(t *testing.T) (urls []*url.URL, replicas int) {
	t.Helper()
	o := build(t, "prod")
	var cm *corev1.ConfigMap
	for _, c := range objectsOf[*corev1.ConfigMap](o) {
		if strings.HasPrefix(c.Name, "qfetch-config") {
			cm = c
		}
	}
	if cm == nil {
		t.Fatal("prod: no qfetch-config ConfigMap")
	}
	for _, s := range strings.Split(cm.Data["QFETCH_NATS_URL"], ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			t.Fatalf("QFETCH_NATS_URL: %v", err)
		}
		urls = append(urls, u)
	}
	replicas, err := strconv.Atoi(cm.Data["QFETCH_NATS_STREAM_REPLICAS"])
	if err != nil {
		t.Fatalf("QFETCH_NATS_STREAM_REPLICAS: %v", err)
	}
	return urls, replicas
}

// The prod NATS cluster, as the chart renders it from the values: three
// servers, routes in mutual TLS, JetStream limits within the volume,
// graceful shutdown within the pod's grace, one server down at a time,
// spread across zones and nodes; and qfetch's prod overlay agrees with it.
func TestNATSClusterValues(t *testing.T) {
	v := natsValues(t)
	conf := renderNATSConfig(t, v)
	cl := get[values](conf, "cluster")
	urls, streamReplicas := prodNATSEnv(t)
	clusterSize := int(get[float64](v, "config", "cluster", "replicas"))

	t.Run("replicas", func(t *testing.T) {
		if clusterSize < 3 || clusterSize%2 == 0 {
			t.Errorf("cluster.replicas = %d: want an odd number of at least 3 (a quorum that survives one down)", clusterSize)
		}
		if streamReplicas != 3 || clusterSize < streamReplicas {
			t.Errorf("QFETCH_NATS_STREAM_REPLICAS = %d on a cluster of %d: want 3 (R3), at most the cluster's size", streamReplicas, clusterSize)
		}
		if got := len(get[[]any](cl, "routes")); got != clusterSize {
			t.Errorf("%d routes rendered for %d servers", got, clusterSize)
		}
	})
	t.Run("qfetch names every server", func(t *testing.T) {
		// One URL per server, by the names the StatefulSet's pods have on
		// the headless Service: a client reconnects to any survivor.
		var want []string
		for i := range clusterSize {
			want = append(want, fmt.Sprintf("%s-%d.%s.%s.svc.cluster.local:%s", str(v, "statefulSet", "name"), i,
				str(v, "headlessService", "name"), natsNamespace, str(v, "config", "nats", "port")))
		}
		var got []string
		for _, u := range urls {
			got = append(got, u.Host)
			if u.Scheme != "nats" && u.Scheme != "tls" {
				t.Errorf("QFETCH_NATS_URL: %s: scheme %q", u, u.Scheme)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("QFETCH_NATS_URL names %v, want the %d servers %v", got, clusterSize, want)
		}
		if !get[bool](cl, "no_advertise") {
			// With advertising on, clients would also learn pod IPs, which the
			// server certificate does not name.
			t.Error("cluster.no_advertise must stay true: the client's list is the servers' names")
		}
	})
	t.Run("routes in mutual TLS", func(t *testing.T) {
		for _, r := range get[[]any](cl, "routes") {
			if !strings.HasPrefix(fmt.Sprint(r), "tls://") {
				t.Errorf("route %v is not tls://", r)
			}
		}
		rt := get[values](cl, "tls")
		for _, k := range []string{"cert_file", "key_file", "ca_file"} {
			if str(rt, k) == "" {
				t.Errorf("cluster.tls.%s unset", k)
			}
		}
		if !get[bool](rt, "verify") {
			t.Error("cluster.tls.verify must be true: a route peer must show a certificate the CA signed")
		}
		if !strings.HasPrefix(str(rt, "ca_file"), str(v, "config", "cluster", "tls", "dir")) {
			t.Errorf("cluster.tls.ca_file %s is not in the route secret's mount %s", str(rt, "ca_file"), str(v, "config", "cluster", "tls", "dir"))
		}
		if ct := get[values](conf, "tls"); str(ct, "cert_file") == "" || str(ct, "ca_file") == "" {
			t.Error("the client port's TLS has no certificate or CA")
		}
	})
	t.Run("JetStream limits", func(t *testing.T) {
		js := get[values](conf, "jetstream")
		pvc := natsSize(t, str(v, "config", "jetstream", "fileStore", "pvc", "size"))
		maxFile := natsSize(t, unraw(js["max_file_store"]))
		maxMem := natsSize(t, unraw(js["max_memory_store"]))
		// A fifth of the volume for raft logs, snapshots and compaction.
		if maxFile <= 0 || maxFile*10 > pvc*8 {
			t.Errorf("max_file_store %d: want > 0 and at most 80%% of the PVC (%d)", maxFile, pvc)
		}
		limit := natsSize(t, str(v, "container", "resources", "limits", "memory"))
		gomem := natsSize(t, strings.TrimSuffix(str(v, "container", "env", "GOMEMLIMIT"), "B"))
		if maxMem <= 0 || gomem <= maxMem || gomem > limit*9/10 {
			t.Errorf("memory: max_memory_store %d, GOMEMLIMIT %d, limit %d: want 0 < max_memory_store < GOMEMLIMIT <= 90%% of the limit", maxMem, gomem, limit)
		}
		if str(js, "store_dir") != str(v, "config", "jetstream", "fileStore", "dir") || !get[bool](v, "config", "jetstream", "fileStore", "pvc", "enabled") {
			t.Error("the file store must live on the PVC")
		}
	})
	t.Run("lame duck within the grace period", func(t *testing.T) {
		spec := renderNATSPodSpec(t, v)
		grace, err1 := time.ParseDuration(str(conf, "lame_duck_grace_period"))
		dur, err2 := time.ParseDuration(str(conf, "lame_duck_duration"))
		if err1 != nil || err2 != nil {
			t.Fatalf("lame duck settings: %v, %v", err1, err2)
		}
		// The chart's own rule (pod-template.yaml): the grace period covers
		// lame duck plus 20 s of shutdown.
		if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second < grace+dur+20*time.Second {
			t.Errorf("terminationGracePeriodSeconds %v < lame duck %v + %v + 20s", spec.TerminationGracePeriodSeconds, grace, dur)
		}
		if get[bool](v, "podTemplate", "configChecksumAnnotation") {
			t.Error("configChecksumAnnotation restarts every server at once on a config change; the reloader applies it in place")
		}
	})
	t.Run("one server down at a time", func(t *testing.T) {
		pdb := renderNATSPDB(t, v)
		if pdb == nil {
			t.Fatal("no PodDisruptionBudget")
		}
		if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 || pdb.Spec.MinAvailable != nil {
			t.Errorf("PDB: maxUnavailable %v, minAvailable %v: want maxUnavailable 1 (R3 keeps its quorum with one down)",
				pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable)
		}
		if !labelsMatch(pdb.Spec.Selector, natsSelectorLabels()) {
			t.Error("the PDB does not select the NATS pods")
		}
	})
	t.Run("spread across zones and nodes", func(t *testing.T) {
		spec := renderNATSPodSpec(t, v)
		keys := map[string]corev1.TopologySpreadConstraint{}
		for _, c := range spec.TopologySpreadConstraints {
			keys[c.TopologyKey] = c
			if !labelsMatch(c.LabelSelector, natsSelectorLabels()) {
				t.Errorf("spread on %s does not select the NATS pods", c.TopologyKey)
			}
		}
		if c, ok := keys["topology.kubernetes.io/zone"]; !ok || c.MaxSkew != 1 || c.WhenUnsatisfiable != corev1.DoNotSchedule {
			t.Errorf("zone spread %+v: want maxSkew 1, DoNotSchedule", c)
		}
		var hostAnti bool
		if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
			for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				hostAnti = hostAnti || term.TopologyKey == "kubernetes.io/hostname" && labelsMatch(term.LabelSelector, natsSelectorLabels())
			}
		}
		if !hostAnti {
			t.Error("no required pod anti-affinity on kubernetes.io/hostname: two servers on one node lose the quorum with it")
		}
	})
	t.Run("monitoring for KEDA and probes", func(t *testing.T) {
		if got := get[float64](conf, "http_port"); got != 8222 {
			t.Errorf("http_port %v: KEDA (natsServerMonitoringEndpoint) and the chart's probes use 8222", got)
		}
	})
}

// The renderer follows the chart where it matters: a disabled TLS gives
// nats:// routes, advertise on gives no_advertise false, a missing maxSize
// falls back to the PVC's size, and the formatter writes includes and raw
// values as the chart does.
func TestNATSRendererMirrorsChart(t *testing.T) {
	v := natsValues(t)
	c := get[values](v, "config")
	get[values](c, "cluster", "tls")["enabled"] = false
	get[values](c, "cluster")["noAdvertise"] = false
	get[values](c, "cluster", "routeURLs")["useFQDN"] = false
	delete(get[values](c, "jetstream", "fileStore"), "maxSize")
	conf := renderNATSConfig(t, v)
	if got := fmt.Sprint(get[[]any](conf, "cluster", "routes")[1]); got != "nats://nats-1.nats-headless:6222" {
		t.Errorf("route %s, want the chart's nats://nats-1.nats-headless:6222", got)
	}
	if get[bool](conf, "cluster", "no_advertise") || get[values](conf, "cluster", "tls") != nil {
		t.Error("no_advertise or route TLS left on")
	}
	if got := get[values](conf, "jetstream")["max_file_store"]; got != "<< 10Gi >>" {
		t.Errorf("max_file_store %v, want the PVC's << 10Gi >>", got)
	}
	text := formatNATSConfig(t, conf)
	for _, want := range []string{"include ../nats-auth/qfetch-auth.conf;", `"server_name": $SERVER_NAME,`, `"max_file_store": 10Gi`} {
		if !strings.Contains(text, want) {
			t.Errorf("formatted config lacks %q:\n%s", want, text)
		}
	}
}
