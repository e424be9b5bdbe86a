package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/tlsca"
)

// Qualys is the Qualys API account and the shape of its requests
// (QFETCH_QUALYS_* when the spec field is named Qualys).
type Qualys struct {
	URL      string `envconfig:"URL" required:"true" desc:"API base, e.g. https://qualysapi.qg2.apps.qualys.com"`
	Username string `envconfig:"USERNAME" required:"true" desc:"API user (Basic auth)"`
	Password Secret `envconfig:"PASSWORD" required:"true" desc:"API password (Basic auth)"`
	CAFile   string `envconfig:"CA_FILE" desc:"extra PEM CA bundle, e.g. for a TLS-intercepting proxy"`

	ConnectTimeout time.Duration `envconfig:"CONNECT_TIMEOUT" default:"30s" desc:"dial and TLS handshake"`
	HeaderTimeout  time.Duration `envconfig:"HEADER_TIMEOUT" default:"10m" desc:"request sent to first response byte; Qualys may think long"`
	IdleTimeout    time.Duration `envconfig:"IDLE_TIMEOUT" default:"5m" desc:"longest wait for the next body byte"`
	APIVersion     string        `envconfig:"API_VERSION" default:"2.0" desc:"API path version"`

	// The minimum transfer rate: a body that brings fewer than
	// MinRateBytes in a MinRateWindow fails, retryable, as a stall does.
	MinRateBytes  int64         `envconfig:"MIN_RATE_BYTES" default:"262144" desc:"body bytes each MIN_RATE_WINDOW must bring, or the call fails"`
	MinRateWindow time.Duration `envconfig:"MIN_RATE_WINDOW" default:"10m" desc:"window of the minimum rate; at least IDLE_TIMEOUT"`

	HostListParams           Params `envconfig:"HOSTLIST_PARAMS" desc:"extra Host List parameters (the filters), URL-encoded"`
	DetectionParams          Params `envconfig:"DETECTION_PARAMS" desc:"extra Host List Detection parameters, URL-encoded"`
	DetectionTruncationLimit int    `envconfig:"TRUNCATION_LIMIT" default:"0" desc:"hosts per detection response; 0 = the whole batch"`
	HostListPageSize         int    `envconfig:"HOSTLIST_PAGE_SIZE" default:"100000" desc:"hosts per Host List page; 0 = one page"`
	// HostListDetails is the details the planner asks the Host List for:
	// the hosts table needs Basic or All; None lists IDs only, the
	// cheapest pages.
	HostListDetails string `envconfig:"HOSTLIST_DETAILS" default:"Basic" desc:"Host List details: None (IDs only), Basic or All"`
	// KBParams are the operator's KnowledgeBase parameters: sent with the
	// QID listing and every KnowledgeBase batch of a pass.
	KBParams Params `envconfig:"KB_PARAMS" desc:"extra KnowledgeBase parameters, URL-encoded"`
	// ShowTags asks both APIs for each host's tags: the tables' tags
	// column (see HostListExtra).
	ShowTags bool `envconfig:"SHOW_TAGS" default:"false" desc:"ask for each host's tags (show_tags=1 on Host List and detection requests)"`
}

// Validate checks the Qualys section on its own.
func (q Qualys) Validate() error {
	var errs []error
	bad := func(field string, err error) { errs = append(errs, fieldErr(field, err)) }

	if err := checkQualysURL(q.URL); err != nil {
		bad("URL", err)
	}
	switch {
	case q.Username == "":
		bad("Username", ErrRequired)
	case strings.Contains(q.Username, ":"):
		// Basic auth splits user from password at the first colon.
		bad("Username", errors.New("must not contain ':'"))
	}
	if q.Password == "" {
		bad("Password", ErrRequired)
	}
	if err := checkReadable(q.CAFile); err != nil {
		bad("CAFile", err)
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{{"ConnectTimeout", q.ConnectTimeout}, {"HeaderTimeout", q.HeaderTimeout}, {"IdleTimeout", q.IdleTimeout}} {
		if d.v <= 0 {
			bad(d.field, fmt.Errorf("must be positive, got %s", d.v))
		}
	}
	if q.MinRateBytes <= 0 {
		bad("MinRateBytes", fmt.Errorf("must be positive, got %d", q.MinRateBytes))
	}
	if q.MinRateWindow < q.IdleTimeout {
		// A shorter window would cut a pause the idle timeout allows.
		bad("MinRateWindow", fmt.Errorf("must be at least the idle timeout (%s), got %s", q.IdleTimeout, q.MinRateWindow))
	}
	if !apiVersionRE.MatchString(q.APIVersion) {
		bad("APIVersion", fmt.Errorf("must look like 2.0, got %q", q.APIVersion))
	}
	if err := q.HostListParams.checkHostList(); err != nil {
		bad("HostListParams", err)
	}
	if err := q.DetectionParams.checkDetection(); err != nil {
		bad("DetectionParams", err)
	}
	if err := q.KBParams.checkKB(); err != nil {
		bad("KBParams", err)
	}
	if q.DetectionTruncationLimit < 0 {
		bad("DetectionTruncationLimit", fmt.Errorf("must be 0 or more, got %d", q.DetectionTruncationLimit))
	}
	if q.HostListPageSize < 0 {
		bad("HostListPageSize", fmt.Errorf("must be 0 or more, got %d", q.HostListPageSize))
	}
	if !slices.Contains(qualys.HostListDetails, q.HostListDetails) {
		bad("HostListDetails", fmt.Errorf("must be None, Basic or All, got %q", q.HostListDetails))
	}
	if err := q.checkShowTags(); err != nil {
		bad("ShowTags", err)
	}
	return errors.Join(errs...)
}

var apiVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// checkQualysURL wants scheme://host[:port] and nothing else; it never
// echoes the URL, which may carry a password. http:// is for a loopback
// host only (the simulator, `qfetch local`): anywhere else the Basic
// credentials would cross the network in clear text (#17.9).
func checkQualysURL(s string) error {
	if s == "" {
		return ErrRequired
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URL (want https://host)")
	}
	if u.User != nil {
		return errors.New("must not contain a user name or password; give them in their own variables")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("must start with https:// or http://, got scheme %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("has no host (want https://host)")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be only scheme://host[:port]; qfetch adds the API path")
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return fmt.Errorf("http:// would send the password in clear text; use https:// (http:// is accepted only for a loopback host: localhost, 127.0.0.0/8, ::1), got host %q", u.Hostname())
	}
	return nil
}

// loopbackHost reports localhost or a loopback address literal. Other names
// are not resolved: what a name resolves to can change after the check.
func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// NATS is the JetStream connection (QFETCH_NATS_*).
type NATS struct {
	URL            string `envconfig:"URL" required:"true" desc:"NATS server URL(s), comma-separated"`
	CredsFile      string `envconfig:"CREDS_FILE" desc:"NATS .creds file (JWT + NKey), for servers with decentralized auth"`
	NKeyFile       string `envconfig:"NKEY_FILE" desc:"file holding this role's NATS user NKey seed (SU...); the server config lists its public key"`
	CAFile         string `envconfig:"CA_FILE" desc:"PEM CA bundle that signed the NATS server's certificate; set, the connection must be TLS"`
	CertFile       string `envconfig:"CERT_FILE" desc:"PEM client certificate for mutual TLS, with QFETCH_NATS_KEY_FILE"`
	KeyFile        string `envconfig:"KEY_FILE" desc:"PEM key of the client certificate, with QFETCH_NATS_CERT_FILE"`
	StreamReplicas int    `envconfig:"STREAM_REPLICAS" default:"1" desc:"JetStream replicas for the stream and KV buckets qfetch creates"`
}

// Validate checks the NATS section on its own.
func (n NATS) Validate() error {
	var errs []error
	if err := checkNATSURLs(n.URL); err != nil {
		errs = append(errs, fieldErr("URL", err))
	}
	if err := checkReadable(n.CredsFile); err != nil {
		errs = append(errs, fieldErr("CredsFile", err))
	}
	if err := checkNKeySeed(n.NKeyFile); err != nil {
		errs = append(errs, fieldErr("NKeyFile", err))
	}
	if n.NKeyFile != "" && n.CredsFile != "" {
		errs = append(errs, fieldErr("NKeyFile", errors.New("set either it or the creds file, not both")))
	}
	if err := checkCABundle(n.CAFile); err != nil {
		errs = append(errs, fieldErr("CAFile", err))
	}
	switch {
	case n.CertFile != "" && n.KeyFile == "":
		errs = append(errs, fieldErr("KeyFile", fmt.Errorf("%w with a client certificate", ErrRequired)))
	case n.CertFile == "" && n.KeyFile != "":
		errs = append(errs, fieldErr("CertFile", fmt.Errorf("%w with a client key", ErrRequired)))
	case n.CertFile != "":
		if err := checkReadable(n.CertFile); err != nil {
			errs = append(errs, fieldErr("CertFile", err))
		} else if err := checkReadable(n.KeyFile); err != nil {
			errs = append(errs, fieldErr("KeyFile", err))
		} else if _, err := tls.LoadX509KeyPair(n.CertFile, n.KeyFile); err != nil {
			// crypto/tls names neither the key nor its bytes.
			errs = append(errs, fieldErr("CertFile", fmt.Errorf("with the key file, not a usable certificate and key: %w", err)))
		}
	}
	if n.StreamReplicas < 1 || n.StreamReplicas > 5 {
		errs = append(errs, fieldErr("StreamReplicas", fmt.Errorf("must be between 1 and 5, got %d", n.StreamReplicas)))
	}
	return errors.Join(errs...)
}

// checkNKeySeed wants a user NKey seed; it never echoes the file's bytes.
func checkNKeySeed(path string) error {
	if err := checkReadable(path); err != nil || path == "" {
		return err
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", path, pathReason(err))
	}
	seed := bytes.TrimSpace(raw)
	defer clear(raw)
	kp, err := nkeys.FromSeed(seed)
	if err != nil {
		return fmt.Errorf("%q does not hold an NKey seed (one line starting SU)", path)
	}
	defer kp.Wipe()
	if pub, err := kp.PublicKey(); err != nil || !strings.HasPrefix(pub, "U") {
		return fmt.Errorf("%q holds an NKey seed that is not a user's (want one starting SU)", path)
	}
	return nil
}

// checkCABundle wants a file of PEM certificates.
func checkCABundle(path string) error {
	if err := checkReadable(path); err != nil || path == "" {
		return err
	}
	if _, err := tlsca.Pool(path); err != nil {
		return err
	}
	return nil
}

func checkNATSURLs(s string) error {
	if strings.TrimSpace(s) == "" {
		return ErrRequired
	}
	for i, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return fmt.Errorf("URL %d of the list is empty", i+1)
		}
		if !strings.Contains(item, "://") {
			item = "nats://" + item // as nats.go does
		}
		u, err := url.Parse(item)
		if err != nil {
			return fmt.Errorf("URL %d of the list is not a valid URL", i+1)
		}
		if u.User != nil {
			return fmt.Errorf("URL %d of the list carries credentials; use the creds file instead", i+1)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("URL %d of the list has scheme %q; want nats, tls, ws or wss", i+1, u.Scheme)
		}
		if u.Hostname() == "" {
			return fmt.Errorf("URL %d of the list has no host", i+1)
		}
	}
	return nil
}

// S3 is the bucket the runs land in (QFETCH_S3_*). With neither key set, the
// client uses IAM / instance credentials. An access key ID names a key and
// proves nothing (MinIO allows three characters): it is scrubbed, but has
// no minimum length (minlen:"1").
type S3 struct {
	Endpoint  string `envconfig:"ENDPOINT" required:"true" desc:"host:port of the S3 API, no scheme"`
	Secure    bool   `envconfig:"SECURE" default:"true" desc:"use TLS"`
	AccessKey Secret `envconfig:"ACCESS_KEY" minlen:"1" desc:"access key; unset with the secret key for IAM credentials"`
	SecretKey Secret `envconfig:"SECRET_KEY" desc:"secret key; unset with the access key for IAM credentials"`
	Bucket    string `envconfig:"BUCKET" required:"true" desc:"bucket the runs land in"`
	Prefix    string `envconfig:"PREFIX" default:"qualys" desc:"key prefix inside the bucket"`
	Region    string `envconfig:"REGION" desc:"bucket region, if the server needs one"`
	CAFile    string `envconfig:"CA_FILE" desc:"extra PEM CA bundle for the S3 endpoint"`
}

// Validate checks the S3 section on its own.
func (s S3) Validate() error {
	var errs []error
	bad := func(field string, err error) { errs = append(errs, fieldErr(field, err)) }

	if err := checkEndpoint(s.Endpoint); err != nil {
		bad("Endpoint", err)
	}
	switch {
	case s.AccessKey != "" && s.SecretKey == "":
		bad("SecretKey", fmt.Errorf("%w with an access key; leave both unset for IAM credentials", ErrRequired))
	case s.AccessKey == "" && s.SecretKey != "":
		bad("AccessKey", fmt.Errorf("%w with a secret key; leave both unset for IAM credentials", ErrRequired))
	}
	if err := checkBucket(s.Bucket); err != nil {
		bad("Bucket", err)
	}
	if err := checkPrefix(s.Prefix); err != nil {
		bad("Prefix", err)
	}
	if err := checkReadable(s.CAFile); err != nil {
		bad("CAFile", err)
	}
	return errors.Join(errs...)
}

func checkEndpoint(s string) error {
	switch {
	case s == "":
		return ErrRequired
	case strings.Contains(s, "://"):
		return errors.New("must be host:port without a scheme; TLS is switched by the SECURE variable")
	case strings.ContainsAny(s, "/@?# "):
		return errors.New("must be host or host:port, nothing else")
	}
	host := s
	if strings.Contains(s, ":") {
		h, port, err := net.SplitHostPort(s)
		if err != nil {
			return fmt.Errorf("must be host or host:port, got %q", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port must be 1-65535, got %q", port)
		}
		host = h
	}
	if host == "" {
		return fmt.Errorf("has no host, got %q", s)
	}
	return nil
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$`)

func checkBucket(s string) error {
	if s == "" {
		return ErrRequired
	}
	if !bucketRE.MatchString(s) || strings.Contains(s, "..") {
		return fmt.Errorf("must be 3-63 lower-case letters, digits, dots or hyphens, starting and ending with a letter or digit, got %q", s)
	}
	return nil
}

// checkPrefix is objstore's rule for a key prefix, so that every prefix
// the binaries start with makes valid keys (#17.10).
func checkPrefix(s string) error {
	if s == "" {
		return ErrRequired // Load fills the default; only a literal spec is empty
	}
	if err := objstore.ValidPrefix(s); err != nil {
		return fmt.Errorf("%w, got %q", err, s)
	}
	return nil
}

// checkReadable tells an operator at start that a configured file is not
// there, rather than at the first TLS handshake.
func checkReadable(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %s: %w", unopened(path), pathReason(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fmt.Errorf("%q is a directory", path)
	}
	return nil
}

// Log is how a binary logs (QFETCH_LOG_*); pass it to logging.New.
type Log struct {
	Format string `envconfig:"FORMAT" default:"auto" desc:"auto (text on a terminal, else json), text or json"`
	Level  string `envconfig:"LEVEL" default:"info" desc:"debug, info, warn or error"`
}

// Validate checks the Log section on its own.
func (l Log) Validate() error {
	var errs []error
	if _, err := logging.ParseFormat(l.Format); err != nil {
		errs = append(errs, fieldErr("Format", fmt.Errorf("must be auto, text or json, got %q", l.Format)))
	}
	if _, err := logging.ParseLevel(l.Level); err != nil {
		errs = append(errs, fieldErr("Level", fmt.Errorf("must be debug, info, warn or error, got %q", l.Level)))
	}
	return errors.Join(errs...)
}

// Fleet sizes the work. Embed it anonymously so its variables carry no
// section name: QFETCH_BATCH_SIZE, QFETCH_MAX_IN_FLIGHT.
type Fleet struct {
	BatchSize   int `envconfig:"BATCH_SIZE" default:"1000" desc:"host IDs per batch, 1-10000"`
	MaxInFlight int `envconfig:"MAX_IN_FLIGHT" default:"2" desc:"fleet-wide cap on detection calls in flight (the Qualys concurrency limit given to qfetch)"`
}

// Validate checks the Fleet section on its own.
func (f Fleet) Validate() error {
	var errs []error
	// A worker refuses a batch message above msg.MaxBatchHosts: one bound.
	if f.BatchSize < 1 || f.BatchSize > msg.MaxBatchHosts {
		errs = append(errs, fieldErr("BatchSize", fmt.Errorf("must be between 1 and %d, got %d", msg.MaxBatchHosts, f.BatchSize)))
	}
	if f.MaxInFlight < 1 {
		errs = append(errs, fieldErr("MaxInFlight", fmt.Errorf("must be 1 or more, got %d", f.MaxInFlight)))
	}
	return errors.Join(errs...)
}

// Tables is the analyst tables' conversion work in a worker
// (QFETCH_TABLES_*).
type Tables struct {
	Concurrency int `envconfig:"CONCURRENCY" default:"1" desc:"table conversions this worker runs at once (0: none); they take no Qualys slot"`
}

// Validate checks the Tables section on its own.
func (t Tables) Validate() error {
	if t.Concurrency < 0 || t.Concurrency > 64 {
		return fieldErr("Concurrency", fmt.Errorf("must be between 0 and 64, got %d", t.Concurrency))
	}
	return nil
}
