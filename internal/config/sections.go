package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/logging"
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

	HostListParams           Params `envconfig:"HOSTLIST_PARAMS" desc:"extra Host List parameters (the filters), URL-encoded"`
	DetectionParams          Params `envconfig:"DETECTION_PARAMS" desc:"extra Host List Detection parameters, URL-encoded"`
	DetectionTruncationLimit int    `envconfig:"TRUNCATION_LIMIT" default:"0" desc:"hosts per detection response; 0 = the whole batch"`
	HostListPageSize         int    `envconfig:"HOSTLIST_PAGE_SIZE" default:"100000" desc:"hosts per Host List page; 0 = one page"`
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
	if !apiVersionRE.MatchString(q.APIVersion) {
		bad("APIVersion", fmt.Errorf("must look like 2.0, got %q", q.APIVersion))
	}
	if err := q.HostListParams.checkHostList(); err != nil {
		bad("HostListParams", err)
	}
	if err := q.DetectionParams.checkDetection(); err != nil {
		bad("DetectionParams", err)
	}
	if q.DetectionTruncationLimit < 0 {
		bad("DetectionTruncationLimit", fmt.Errorf("must be 0 or more, got %d", q.DetectionTruncationLimit))
	}
	if q.HostListPageSize < 0 {
		bad("HostListPageSize", fmt.Errorf("must be 0 or more, got %d", q.HostListPageSize))
	}
	return errors.Join(errs...)
}

var apiVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)

// checkQualysURL wants scheme://host[:port] and nothing else; it never
// echoes the URL, which may carry a password.
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
	return nil
}

// NATS is the JetStream connection (QFETCH_NATS_*).
type NATS struct {
	URL            string `envconfig:"URL" required:"true" desc:"NATS server URL(s), comma-separated"`
	CredsFile      string `envconfig:"CREDS_FILE" desc:"NATS .creds file (JWT + NKey)"`
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
	if n.StreamReplicas < 1 || n.StreamReplicas > 5 {
		errs = append(errs, fieldErr("StreamReplicas", fmt.Errorf("must be between 1 and 5, got %d", n.StreamReplicas)))
	}
	return errors.Join(errs...)
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
// client uses IAM / instance credentials.
type S3 struct {
	Endpoint  string `envconfig:"ENDPOINT" required:"true" desc:"host:port of the S3 API, no scheme"`
	Secure    bool   `envconfig:"SECURE" default:"true" desc:"use TLS"`
	AccessKey Secret `envconfig:"ACCESS_KEY" desc:"access key; unset with the secret key for IAM credentials"`
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

func checkPrefix(s string) error {
	for seg := range strings.SplitSeq(s, "/") {
		switch seg {
		case "":
			return fmt.Errorf("must be path segments joined by '/', with no leading, trailing or double '/', got %q", s)
		case ".", "..":
			return fmt.Errorf("must not contain %q segments, got %q", seg, s)
		}
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
		return fmt.Errorf("cannot read %q: %w", path, pathReason(err))
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
	if f.BatchSize < 1 || f.BatchSize > 10000 {
		errs = append(errs, fieldErr("BatchSize", fmt.Errorf("must be between 1 and 10000, got %d", f.BatchSize)))
	}
	if f.MaxInFlight < 1 {
		errs = append(errs, fieldErr("MaxInFlight", fmt.Errorf("must be 1 or more, got %d", f.MaxInFlight)))
	}
	return errors.Join(errs...)
}
