package validate

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/qfetch/qfetch/internal/app"
	"github.com/qfetch/qfetch/internal/config"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/natsperm"
	"github.com/qfetch/qfetch/internal/testenv"
)

// natsNode is one server of the test cluster, started from the nats.conf
// the chart renders for its pod.
type natsNode struct {
	name                   string // the pod's name: the server's
	client, route, monitor int    // loopback ports in place of 4222, 6222, 8222
	conf                   string
	srv                    *server.Server
}

// natsPKI is what the prod cluster's Secrets hold: a CA, the client port's
// certificate (nats-server-tls) and the routes' (nats-cluster-tls), laid
// out as the chart mounts them under root/nats-certs/{nats,cluster}/.
type natsPKI struct {
	root  string
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// The prod names the certificates cover (the README says so), plus
// 127.0.0.1: in this test the routes dial loopback addresses in place of
// the pods' names.
var (
	natsClientNames = []string{"nats.nats.svc", "nats.nats.svc.cluster.local", "*.nats-headless.nats.svc.cluster.local"}
	natsRouteNames  = []string{"*.nats-headless.nats.svc.cluster.local"}
)

func newNATSPKI(t *testing.T, root string) *natsPKI {
	t.Helper()
	p := &natsPKI{root: root}
	p.ca, p.caKey = makeCert(t, "qfetch NATS test CA", nil, nil, nil, nil)
	for _, secret := range []struct {
		dir   string
		names []string
		usage []x509.ExtKeyUsage
	}{
		{"nats", natsClientNames, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		// Each server dials routes too: client and server usage.
		{"cluster", natsRouteNames, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		dir := filepath.Join(root, "nats-certs", secret.dir)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cert, key := makeCert(t, secret.names[0], secret.names, secret.usage, p.ca, p.caKey)
		writeCert(t, filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), cert, key)
		writePEMFile(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", p.ca.Raw)
	}
	return p
}

// makeCert makes a CA (parent nil) or a leaf it signs, valid for a day.
func makeCert(t *testing.T, cn string, names []string, usage []x509.ExtKeyUsage, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage, DNSNames: names,
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func writeCert(t *testing.T, certPath, keyPath string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEMFile(t, certPath, "CERTIFICATE", cert.Raw)
	writePEMFile(t, keyPath, "EC PRIVATE KEY", der)
}

func writePEMFile(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// nodeConfig is the rendered config with what differs between a pod and
// this test substituted: loopback hosts and ports, the mount paths under
// root, the store directory of node i. Everything else is as rendered.
func nodeConfig(t *testing.T, conf values, root string, nodes []*natsNode, i int) values {
	t.Helper()
	var paths func(v any) any
	paths = func(v any) any {
		switch x := v.(type) {
		case values:
			out := values{}
			for k, e := range x {
				out[k] = paths(e)
			}
			return out
		case []any:
			out := make([]any, len(x))
			for k, e := range x {
				out[k] = paths(e)
			}
			return out
		case string:
			if rest, ok := strings.CutPrefix(x, "/etc/nats-certs/"); ok {
				return filepath.Join(root, "nats-certs", rest)
			}
		}
		return v
	}
	c := paths(conf).(values)
	c["host"] = "127.0.0.1"
	c["port"] = float64(nodes[i].client)
	c["http_port"] = float64(nodes[i].monitor)
	c["pid_file"] = filepath.Join(root, nodes[i].name+".pid")
	js := get[values](c, "jetstream")
	js["store_dir"] = filepath.Join(root, "data-"+nodes[i].name)
	cl := get[values](c, "cluster")
	cl["host"] = "127.0.0.1"
	cl["port"] = float64(nodes[i].route)
	routes := get[[]any](cl, "routes")
	if len(routes) != len(nodes) {
		t.Fatalf("%d routes rendered for %d nodes", len(routes), len(nodes))
	}
	for j, r := range routes {
		u, err := url.Parse(fmt.Sprint(r))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.Hostname(), nodes[j].name+".") {
			t.Fatalf("route %d is %s, not to %s", j, u, nodes[j].name)
		}
		u.Host = fmt.Sprintf("127.0.0.1:%d", nodes[j].route)
		routes[j] = u.String()
	}
	return c
}

// startNATSCluster writes each node's config where the chart puts it (the
// auth include resolves as in the pod), parses it with nats-server's own
// parser, and starts the three servers. Env: SERVER_NAME per node (the
// chart's env) and QFETCH_NKEY_<ROLE> (the Secret qfetch-nats-users).
func startNATSCluster(t *testing.T, conf values, pki *natsPKI) []*natsNode {
	t.Helper()
	root := pki.root
	n := int(len(get[[]any](conf, "cluster", "routes")))
	ports := freePorts(t, 3*n)
	var nodes []*natsNode
	for i := range n {
		nodes = append(nodes, &natsNode{name: fmt.Sprintf("nats-%d", i), client: ports[3*i], route: ports[3*i+1], monitor: ports[3*i+2]})
	}
	auth, err := os.ReadFile(filepath.Join(prodNATS, "nats", "qfetch-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"nats-config", "nats-auth"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "nats-auth", "qfetch-auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, node := range nodes {
		node.conf = filepath.Join(root, "nats-config", node.name+".conf")
		if err := os.WriteFile(node.conf, []byte(formatNATSConfig(t, nodeConfig(t, conf, root, nodes, i))), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("SERVER_NAME", node.name)
		opts, err := server.ProcessConfigFile(node.conf)
		if err != nil {
			t.Fatalf("%s: the rendered nats.conf does not load: %v", node.name, err)
		}
		checkNodeOptions(t, node, opts)
		opts.NoLog, opts.NoSigs = true, true
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("%s: %v", node.name, err)
		}
		node.srv = srv
		srv.Start()
		t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	}
	for _, node := range nodes {
		if !node.srv.ReadyForConnections(30 * time.Second) {
			t.Fatalf("%s not ready", node.name)
		}
	}
	return nodes
}

// checkNodeOptions: what the server made of the rendered config is what
// the values meant.
func checkNodeOptions(t *testing.T, node *natsNode, o *server.Options) {
	t.Helper()
	switch {
	case o.ServerName != node.name:
		t.Errorf("%s: server_name %q", node.name, o.ServerName)
	case o.TLSConfig == nil || len(o.TLSConfig.Certificates) == 0:
		t.Errorf("%s: no client TLS", node.name)
	case o.Cluster.TLSConfig == nil || o.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert:
		t.Errorf("%s: routes not in mutual TLS", node.name)
	case !o.Cluster.NoAdvertise || o.Cluster.Name != "nats":
		t.Errorf("%s: cluster %q, no_advertise %v", node.name, o.Cluster.Name, o.Cluster.NoAdvertise)
	case len(o.Nkeys) != len(natsperm.Roles):
		t.Errorf("%s: %d NKey users, want one per role", node.name, len(o.Nkeys))
	case o.JetStreamMaxStore != 8<<30 || o.JetStreamMaxMemory != 256<<20:
		t.Errorf("%s: JetStream limits file %d, memory %d", node.name, o.JetStreamMaxStore, o.JetStreamMaxMemory)
	case o.LameDuckGracePeriod != 10*time.Second || o.LameDuckDuration != 30*time.Second:
		t.Errorf("%s: lame duck %v + %v", node.name, o.LameDuckGracePeriod, o.LameDuckDuration)
	}
}

// roleConn connects as role with its NKey over TLS, to the prod overlay's
// QFETCH_NATS_URL: the dialer sends each server's prod name to its
// loopback port, and TLS verifies the prod name against the certificate.
type roleConn struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	refusals *natsperm.Refusals
}

type loopbackDialer struct{ addr map[string]string }

func (d loopbackDialer) Dial(network, address string) (net.Conn, error) {
	a, ok := d.addr[address]
	if !ok {
		return nil, fmt.Errorf("no test server for %s", address)
	}
	return (&net.Dialer{Timeout: 5 * time.Second}).Dial(network, a)
}

func connectRole(t *testing.T, urls []*url.URL, nodes []*natsNode, pki *natsPKI, role natsperm.Role) *roleConn {
	t.Helper()
	seed := roleSeeds[role]
	d := loopbackDialer{addr: map[string]string{}}
	var list []string
	for i, u := range urls {
		d.addr[u.Host] = fmt.Sprintf("127.0.0.1:%d", nodes[i].client)
		list = append(list, u.String())
	}
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	rc := &roleConn{refusals: &natsperm.Refusals{}}
	nkeyOpt, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	rc.nc, err = nats.Connect(strings.Join(list, ","),
		nats.Name("deploy-validate-"+string(role)),
		nats.Secure(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		nkeyOpt,
		nats.SetCustomDialer(d),
		nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { rc.refusals.Note(err) }),
	)
	if err != nil {
		t.Fatalf("%s connects: %v", role, err)
	}
	t.Cleanup(rc.nc.Close)
	if _, err := rc.nc.TLSConnectionState(); err != nil {
		t.Fatalf("%s: not on TLS: %v", role, err)
	}
	if rc.js, err = jetstream.New(rc.nc); err != nil {
		t.Fatal(err)
	}
	return rc
}

// roleSeeds are the roles' NKey seed files, made by TestProdNATSCluster.
var roleSeeds = map[natsperm.Role]string{}

// The prod NATS cluster, run: the nats.conf the chart renders from
// nats-helm-values.yaml, parsed by nats-server's own parser, starts three
// servers that form a cluster over mutual-TLS routes; qfetch's roles sign
// in over TLS with their NKeys at the prod overlay's URLs and set up their
// objects at the overlay's replica count (the planner creates the R3
// stream and buckets); a role is refused what natsperm refuses it; and
// with the stream's leader killed, the other two keep taking writes and
// agree on them.
func TestProdNATSCluster(t *testing.T) {
	root := t.TempDir()
	v := natsValues(t)
	conf := renderNATSConfig(t, v)
	urls, replicas := prodNATSEnv(t)
	pki := newNATSPKI(t, root)
	for _, r := range natsperm.Roles {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := kp.Seed()
		pub, _ := kp.PublicKey()
		roleSeeds[r] = filepath.Join(root, string(r)+".nk")
		if err := os.WriteFile(roleSeeds[r], seed, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(natsperm.EnvVar(r), pub)
	}
	nodes := startNATSCluster(t, conf, pki)
	const wait = 45 * time.Second // a loaded 2-core machine; a healthy cluster forms in a few seconds

	t.Run("cluster forms over TLS routes", func(t *testing.T) {
		testenv.EventuallyOK(t, wait, func() error {
			for _, n := range nodes {
				rz, err := n.srv.Routez(nil)
				if err != nil {
					return err
				}
				peers := map[string]bool{}
				for _, r := range rz.Routes {
					peers[r.RemoteName] = true
				}
				if len(peers) != len(nodes)-1 {
					return fmt.Errorf("%s routes to %v", n.name, peers)
				}
			}
			return nil
		}, "every server routes to the other two")
		testenv.EventuallyOK(t, wait, func() error { return metaLeader(nodes) }, "a JetStream meta leader")
		// The monitoring port the probes and KEDA read.
		for _, n := range nodes {
			testenv.EventuallyOK(t, wait, func() error {
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.monitor))
				if err != nil {
					return err
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%s /healthz: %s", n.name, resp.Status)
				}
				return nil
			}, "healthz")
		}
		routeRefusesStrangers(t, nodes[0], pki)
	})

	ctx, cancel := context.WithTimeout(t.Context(), 2*wait)
	defer cancel()
	conns := map[natsperm.Role]*roleConn{}
	for _, r := range natsperm.Roles {
		conns[r] = connectRole(t, urls, nodes, pki, r)
	}
	cfg := config.NATS{StreamReplicas: replicas}

	t.Run("every role sets up inside its rights at R3", func(t *testing.T) {
		for _, s := range []struct {
			role natsperm.Role
			app  app.Role
		}{{natsperm.Planner, app.RolePlanner}, {natsperm.Worker, app.RoleWorker}, {natsperm.Exporter, app.RoleExporter}} {
			testenv.EventuallyOK(t, wait, func() error {
				_, err := app.Queue(ctx, conns[s.role].js, cfg, config.Fleet{MaxInFlight: 2}, 0, s.app)
				return err
			}, "%s sets up JetStream", s.role)
		}
		testenv.EventuallyOK(t, wait, func() error { _, err := app.Open(ctx, conns[natsperm.Operator].js); return err }, "operator opens")
		js := conns[natsperm.Planner].js
		for _, name := range []string{msg.StreamBatches, "KV_" + ledger.BucketRuns} {
			testenv.EventuallyOK(t, wait, func() error {
				s, err := js.Stream(ctx, name)
				if err != nil {
					return err
				}
				info := s.CachedInfo()
				if info.Config.Replicas != replicas || info.Cluster == nil || len(info.Cluster.Replicas) != replicas-1 {
					return fmt.Errorf("%s: replicas %d, cluster %+v", name, info.Config.Replicas, info.Cluster)
				}
				for _, p := range info.Cluster.Replicas {
					if !p.Current {
						return fmt.Errorf("%s: replica %s not current", name, p.Name)
					}
				}
				return nil
			}, "%s at R%d", name, replicas)
		}
		for r, c := range conns {
			if err := c.refusals.Err(); err != nil {
				t.Errorf("%s was refused during its own setup: %v", r, err)
			}
		}
	})

	t.Run("the worker is refused what natsperm refuses it", func(t *testing.T) {
		w := conns[natsperm.Worker]
		// Deleting the batch stream is the planner's operator's business,
		// never a worker's (natsperm.For: no STREAM.DELETE for anyone).
		// The server refuses with an asynchronous -ERR and never answers:
		// the request times out, so the wait is short.
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		defer rcancel()
		if err := w.js.DeleteStream(rctx, msg.StreamBatches); err == nil {
			t.Fatal("the worker deleted the batch stream")
		}
		want := "$JS.API.STREAM.DELETE." + msg.StreamBatches
		testenv.EventuallyOK(t, wait, func() error {
			var re *natsperm.RefusedError
			if err := w.refusals.Err(); !errors.As(err, &re) || re.Subject != want {
				return fmt.Errorf("refusals %v, want one on %s", err, want)
			}
			return nil
		}, "the server's refusal reaches the worker")
		if _, err := conns[natsperm.Planner].js.Stream(ctx, msg.StreamBatches); err != nil {
			t.Errorf("the batch stream is gone: %v", err)
		}
	})

	t.Run("R3 takes writes with one server killed", func(t *testing.T) {
		p := conns[natsperm.Planner]
		leader := streamLeader(t, ctx, p.js, msg.StreamBatches)
		var dead *natsNode
		var alive []*natsNode
		for _, n := range nodes {
			if n.name == leader {
				dead = n
			} else {
				alive = append(alive, n)
			}
		}
		if dead == nil {
			t.Fatalf("leader %q is none of the servers", leader)
		}
		dead.srv.Shutdown() // no lame duck: as a kill -9 or a lost node
		dead.srv.WaitForShutdown()

		const n = 20
		for i := range n {
			testenv.EventuallyOK(t, wait, func() error {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				defer pcancel()
				// The ID makes a publish retried after a lost answer count once.
				_, err := p.js.Publish(pctx, fmt.Sprintf("qfetch.batch.deploytest.%d", i), []byte("ids"),
					jetstream.WithMsgID(fmt.Sprintf("deploytest-%d", i)))
				return err
			}, "publish %d with %s down", i, dead.name)
		}
		kv, err := p.js.KeyValue(ctx, ledger.BucketRuns)
		if err != nil {
			t.Fatal(err)
		}
		testenv.EventuallyOK(t, wait, func() error {
			pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
			defer pcancel()
			_, err := kv.Put(pctx, "deploytest", []byte("after the kill"))
			return err
		}, "KV write with %s down", dead.name)

		// The two survivors hold the same stream and bucket.
		for _, name := range []string{msg.StreamBatches, "KV_" + ledger.BucketRuns} {
			testenv.EventuallyOK(t, wait, func() error {
				var states []server.StreamState
				for _, a := range alive {
					st, err := localStream(a.srv, name)
					if err != nil {
						return err
					}
					states = append(states, st)
				}
				a, b := states[0], states[1]
				if a.Msgs != b.Msgs || a.LastSeq != b.LastSeq || a.FirstSeq != b.FirstSeq || a.Bytes != b.Bytes {
					return fmt.Errorf("%s differs: %s %+v, %s %+v", name, alive[0].name, a, alive[1].name, b)
				}
				if name == msg.StreamBatches && a.Msgs != n {
					return fmt.Errorf("%s holds %d messages, want %d", name, a.Msgs, n)
				}
				return nil
			}, "%s consistent on %s and %s", name, alive[0].name, alive[1].name)
		}
		if got := streamLeader(t, ctx, p.js, msg.StreamBatches); got == dead.name {
			t.Errorf("the stream's leader is still the dead %s", got)
		}
	})
}

func metaLeader(nodes []*natsNode) error {
	var leaders []string
	for _, n := range nodes {
		if n.srv.Running() && n.srv.JetStreamIsLeader() {
			leaders = append(leaders, n.name)
		}
	}
	if len(leaders) != 1 {
		return fmt.Errorf("meta leaders %v", leaders)
	}
	for _, n := range nodes {
		if n.srv.Running() && !n.srv.JetStreamIsCurrent() {
			return fmt.Errorf("%s is not current with the meta group", n.name)
		}
	}
	return nil
}

func streamLeader(t *testing.T, ctx context.Context, js jetstream.JetStream, name string) string {
	t.Helper()
	var leader string
	testenv.EventuallyOK(t, 45*time.Second, func() error {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		if c := s.CachedInfo().Cluster; c != nil && c.Leader != "" {
			leader = c.Leader
			return nil
		}
		return fmt.Errorf("%s has no leader", name)
	}, "%s's leader", name)
	return leader
}

// localStream is srv's own replica of a stream (its monitoring /jsz).
func localStream(srv *server.Server, name string) (server.StreamState, error) {
	jsz, err := srv.Jsz(&server.JSzOptions{Accounts: true, Streams: true})
	if err != nil {
		return server.StreamState{}, err
	}
	for _, a := range jsz.AccountDetails {
		for _, s := range a.Streams {
			if s.Name == name {
				return s.State, nil
			}
		}
	}
	return server.StreamState{}, fmt.Errorf("%s holds no replica of %s", srv.Name(), name)
}

// routeRefusesStrangers: the route port starts with a TLS handshake and
// wants a client certificate its CA signed: a peer with the route
// certificate gets the route INFO, a peer without one a TLS alert.
func routeRefusesStrangers(t *testing.T, n *natsNode, pki *natsPKI) {
	t.Helper()
	dir := filepath.Join(pki.root, "nats-certs", "cluster")
	routeCert, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	if line, err := dialRoute(n, pki, &routeCert); err != nil || !strings.HasPrefix(line, "INFO ") {
		t.Fatalf("a peer with the route certificate: %q, %v; want the route INFO", line, err)
	}
	_, err = dialRoute(n, pki, nil)
	// The server's TLS alert (crypto/tls reports it as the "remote error"
	// operation): the handshake, not a later hang-up, refused the peer.
	var alert *net.OpError
	if !errors.As(err, &alert) || alert.Op != "remote error" {
		t.Fatalf("a route peer without a client certificate: %v, want a TLS alert refusing it", err)
	}
}

// dialRoute opens a route connection to n as a peer showing cert (none
// when nil) and returns the first line the server sends.
func dialRoute(n *natsNode, pki *natsPKI, cert *tls.Certificate) (string, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.route), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	pool := x509.NewCertPool()
	pool.AddCert(pki.ca)
	cfg := &tls.Config{RootCAs: pool, ServerName: n.name + ".nats-headless.nats.svc.cluster.local", MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		return "", err
	}
	// TLS 1.3 reports a refused client certificate on the first read.
	return bufio.NewReader(tc).ReadString('\n')
}
