package qualys

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/tlsca"
)

// Config describes one Qualys API account. Durations of zero take the
// defaults below.
type Config struct {
	BaseURL    string // e.g. https://qualysapi.qg2.apps.qualys.com; no path, no userinfo
	Username   string
	Password   string
	APIVersion string // path segment, "2.0" unless set
	UserAgent  string // "qfetch" unless set; also sent as X-Requested-With
	CAFile     string // extra PEM bundle for TLS-intercepting proxies

	ConnectTimeout time.Duration // dial and TLS handshake; default 30s
	HeaderTimeout  time.Duration // request sent → response headers; default 10m
	IdleTimeout    time.Duration // no body byte for this long; default 5m

	// MinRateBytes body bytes must arrive in each MinRateWindow, or the
	// call fails with ErrTooSlow: a trickle that beats the idle timeout
	// must not hold a call, and a fleet slot, forever. Defaults 256 KiB
	// per 10m: far below any healthy answer, and a window twice the
	// default idle timeout, so a pause the idle timeout allows is no
	// fault on its own.
	MinRateBytes  int64
	MinRateWindow time.Duration

	Waits Waits // back-pressure waits when Qualys does not say; DefaultWaits unless set

	// Transport replaces the HTTP transport (tests). Timeouts other than
	// IdleTimeout are then the transport's business.
	Transport http.RoundTripper
}

// Client calls the Qualys VM API. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	username  string
	password  string
	version   string
	userAgent string
	idle      time.Duration
	minBytes  int64
	window    time.Duration
	waits     Waits
	hc        *http.Client
}

// Root elements of the two answers qfetch asks for.
const (
	RootHostList   = "HOST_LIST_OUTPUT"
	RootDetections = "HOST_LIST_VM_DETECTION_OUTPUT"
)

// Defaults of the minimum transfer rate (Config.MinRateBytes).
const (
	DefaultMinRateBytes  = 256 << 10
	DefaultMinRateWindow = 10 * time.Minute
)

// New checks cfg and builds a client.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(strings.TrimRight(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("qualys: base URL must be http(s)://host[:port], got %q", redactURL(cfg.BaseURL))
	}
	if base.User != nil {
		return nil, errors.New("qualys: base URL must not carry credentials; set the username and password instead")
	}
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("qualys: username and password are required")
	}
	c := &Client{
		base:      base,
		username:  cfg.Username,
		password:  cfg.Password,
		version:   orDefault(cfg.APIVersion, "2.0"),
		userAgent: orDefault(cfg.UserAgent, "qfetch"),
		idle:      orDefaultDur(cfg.IdleTimeout, 5*time.Minute),
		minBytes:  cfg.MinRateBytes,
		window:    orDefaultDur(cfg.MinRateWindow, DefaultMinRateWindow),
		waits:     cfg.Waits,
	}
	if c.minBytes <= 0 {
		c.minBytes = DefaultMinRateBytes
	}
	if c.waits == (Waits{}) {
		c.waits = DefaultWaits
	}
	rt := cfg.Transport
	if rt == nil {
		if rt, err = newTransport(cfg); err != nil {
			return nil, err
		}
	}
	// No Client.Timeout: it would kill a long, healthy stream. The body's
	// watchdog (idle timeout, minimum rate) and the transport's phase
	// timeouts bound stalls.
	c.hc = &http.Client{Transport: rt, CheckRedirect: noRedirect}
	return c, nil
}

func newTransport(cfg Config) (*http.Transport, error) {
	connect := orDefaultDur(cfg.ConnectTimeout, 30*time.Second)
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	t.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = connect
	t.ResponseHeaderTimeout = orDefaultDur(cfg.HeaderTimeout, 10*time.Minute)
	t.MaxIdleConnsPerHost = 16
	if cfg.CAFile != "" {
		pool, err := tlsca.Pool(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("qualys: %w", err)
		}
		t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return t, nil
}

// noRedirect keeps Basic credentials from following a redirect to another
// host, and surfaces a redirect (usually a wrong base URL) as an answer.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Endpoint paths for the configured API version.
func (c *Client) hostListPath() string     { return "/api/" + c.version + "/fo/asset/host/" }
func (c *Client) detectionPath() string    { return "/api/" + c.version + "/fo/asset/host/vm/detection/" }
func (c *Client) kbPath() string           { return "/api/" + c.version + "/fo/knowledge_base/vuln/" }
func (c *Client) endpoint(p string) string { return c.base.String() + p }

// Response is a 200 answer whose body is being streamed. Read passes the
// body through unchanged and returns io.EOF only when the document arrived
// whole, well-formed and not an error document; otherwise the final Read
// returns a classified error. Close it in every case.
type Response struct {
	Status int
	Limits Limits

	v      *Validator
	body   io.Closer
	watch  *watchdog
	cancel context.CancelCauseFunc
}

func (r *Response) Read(p []byte) (int, error) { return r.v.Read(p) }

// Summary describes what was read; complete once Read has returned io.EOF.
func (r *Response) Summary() Summary { return r.v.Summary() }

// Close ends the call. Closing before EOF drops the connection, which is
// what tells Qualys the call is over.
func (r *Response) Close() error {
	r.watch.stop()
	err := r.body.Close()
	r.cancel(errResponseClosed)
	return err
}

var errResponseClosed = errors.New("response closed")

// ErrIdleTimeout is wrapped when no body byte arrived for the idle timeout.
var ErrIdleTimeout = errors.New("no byte received within the idle timeout")

// ErrTooSlow is wrapped when fewer body bytes than the minimum arrived in
// one window (Config.MinRateBytes). Like a stall it is a timeout (its
// Timeout method says so), which the worker takes as a call too big for
// its time and counts toward splitting the batch.
var ErrTooSlow error = tooSlowError{}

type tooSlowError struct{}

func (tooSlowError) Error() string { return "body arrived slower than the minimum transfer rate" }
func (tooSlowError) Timeout() bool { return true }

// answer is what a call expects back: the root element and, for a
// KnowledgeBase call, the list its RESPONSE may hold.
type answer struct {
	root string
	list kbList
}

// post sends one form request and returns the streaming answer, or a
// classified error for anything but HTTP 200. onID and onRange are the
// validator's OnID and OnRange.
func (c *Client) post(ctx context.Context, path string, form url.Values, root string, onID func(uint64), onRange func(lo, hi uint64)) (*Response, error) {
	return c.call(ctx, path, form, answer{root: root}, onID, onRange)
}

// call is post for an answer described in full.
//
// It sets no Accept-Encoding: the transport then asks for gzip itself and
// decompresses transparently (Qualys sent a KnowledgeBase answer gzip'd,
// qualys-api.md §10.3), so the validator, the stored object and the
// watchdog's byte counts all see the XML. A header set here would turn
// that off and hand over the compressed bytes.
func (c *Client) call(ctx context.Context, path string, form url.Values, want answer, onID func(uint64), onRange func(lo, hi uint64)) (*Response, error) {
	callCtx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, c.endpoint(path), strings.NewReader(form.Encode()))
	if err != nil {
		cancel(nil)
		return nil, failure.Permanent(fmt.Errorf("qualys %s: building request: %w", path, err))
	}
	req.SetBasicAuth(c.username, c.password)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Requested-With", c.userAgent)
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.hc.Do(req)
	if err != nil {
		cancel(nil)
		return nil, transportError(ctx, path, err)
	}
	lim := ParseLimits(resp.Header)
	if resp.StatusCode != http.StatusOK {
		raw := readErrorBody(resp.Body)
		_ = resp.Body.Close()
		cancel(nil)
		e, ok := parseErrorDocument(raw)
		if !ok {
			e = APIError{Text: summarizeBody(raw, resp.Status), SecondsToWait: -1, CallsToFinish: -1}
		}
		e.Text = c.scrub(e.Text)
		e.Endpoint, e.Status = path, resp.StatusCode
		if tooLarge(resp.StatusCode) {
			// About this request's size, not about the fleet: a smaller
			// batch gets through.
			return nil, failure.Retryable(fmt.Errorf("%w: %w", ErrTooLarge, e))
		}
		if e.Code == 0 && (e.Root == "" || e.Root == "html") && fromIntermediary(resp.StatusCode) {
			// A 4xx that is no Qualys document comes from something in
			// between (proxy, firewall, gateway): every call meets it, so
			// it is no verdict on this request.
			return nil, failure.FleetWide(e)
		}
		return nil, classify(e, lim, c.waits)
	}

	watch := startWatchdog(c.idle, c.minBytes, c.window, cancel)
	body := &streamReader{ctx: ctx, callCtx: callCtx, r: resp.Body, path: path, watch: watch, timeout: c.idle}
	return &Response{
		Status: resp.StatusCode,
		Limits: lim,
		v: NewValidator(body, ValidatorConfig{
			Endpoint: path, Status: resp.StatusCode, Root: want.root, OnID: onID, OnRange: onRange, Limits: lim, Waits: c.waits,
			Scrub: c.scrub, list: want.list,
		}),
		body:   resp.Body,
		watch:  watch,
		cancel: cancel,
	}, nil
}

// ErrTooLarge is wrapped when a request was refused for its size (413,
// 414, 431): the batch should be split, the fleet is fine.
var ErrTooLarge = errors.New("request too large")

func tooLarge(status int) bool {
	return status == http.StatusRequestEntityTooLarge || status == http.StatusRequestURITooLong ||
		status == http.StatusRequestHeaderFieldsTooLarge
}

// fromIntermediary reports a 4xx status that, without a Qualys document,
// says nothing about the request itself. 408, 409 and 429 keep their
// meaning whoever sends them.
func fromIntermediary(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// scrub removes this client's credentials from text copied out of a
// response: gateways echo requests, Authorization header included, in any
// encoding (I7). logging.Secrets knows the encodings and scrubs a short
// password only as a whole token (#17.8).
func (c *Client) scrub(s string) string {
	var own logging.Secrets
	own.AddBasic(c.username, c.password)
	return own.Scrub(logging.Scrub(s))
}

// transportError classifies a failure to get response headers.
func transportError(ctx context.Context, path string, err error) error {
	if ctx.Err() != nil {
		// Our caller gave up; that is its decision, not a Qualys fault.
		return fmt.Errorf("qualys %s: %w", path, context.Cause(ctx))
	}
	err = fmt.Errorf("qualys %s: %w", path, stripURL(err))
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		// A host that does not exist fails every call alike.
		return failure.FleetWide(err)
	}
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &unknownCA) || errors.As(err, &hostErr) {
		// A certificate problem fails every call alike; retrying burns the queue.
		return failure.FleetWide(err)
	}
	return failure.Retryable(err)
}

// stripURL drops the *url.Error wrapper, whose text repeats the method and
// URL that the caller's message already names by path.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// summarizeBody describes a non-document error body in one short line.
func summarizeBody(raw []byte, status string) string {
	s := strings.Join(strings.Fields(string(raw)), " ")
	if s == "" {
		return status
	}
	return clip(s, 200)
}

// streamReader turns body read failures into classified errors that say
// how far the body got.
type streamReader struct {
	ctx, callCtx context.Context
	r            io.Reader
	path         string
	watch        *watchdog
	timeout      time.Duration
	n            int64
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.n += int64(n)
	if n > 0 {
		s.watch.got(n)
	}
	if err == nil || err == io.EOF {
		return n, err
	}
	switch {
	case s.ctx.Err() != nil:
		err = fmt.Errorf("qualys %s: reading body after %d bytes: %w", s.path, s.n, context.Cause(s.ctx))
	case errors.Is(context.Cause(s.callCtx), ErrIdleTimeout):
		err = failure.Retryable(fmt.Errorf("qualys %s: body stalled after %d bytes, %s: %w", s.path, s.n, s.timeout, ErrIdleTimeout))
	case errors.Is(context.Cause(s.callCtx), ErrTooSlow):
		err = failure.Retryable(fmt.Errorf("qualys %s: body too slow after %d bytes: %w", s.path, s.n, context.Cause(s.callCtx)))
	case errors.Is(context.Cause(s.callCtx), errResponseClosed):
		err = fmt.Errorf("qualys %s: read after close: %w", s.path, errResponseClosed)
	default:
		err = failure.Retryable(fmt.Errorf("qualys %s: reading body after %d bytes: %w", s.path, s.n, err))
	}
	return n, err
}

// watchdog cancels a call whose body stalls for its idle timeout, or
// brings fewer than minBytes in a window. Reads only record the time and
// count of their bytes (atomics); one timer checks both, woken at the next
// idle deadline or window end, not reset per Read.
type watchdog struct {
	idle     time.Duration
	minBytes int64
	window   time.Duration
	last     atomic.Int64 // unix nanos of the last byte
	bytes    atomic.Int64 // body bytes so far
	stopped  atomic.Bool
	cancel   context.CancelCauseFunc

	mu        sync.Mutex // the timer's own state, below
	timer     *time.Timer
	windowEnd time.Time
	mark      int64 // bytes at the start of the window
}

func startWatchdog(idle time.Duration, minBytes int64, window time.Duration, cancel context.CancelCauseFunc) *watchdog {
	now := time.Now()
	w := &watchdog{idle: idle, minBytes: minBytes, window: window, cancel: cancel, windowEnd: now.Add(window)}
	w.last.Store(now.UnixNano())
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer = time.AfterFunc(min(idle, window), w.check)
	return w
}

func (w *watchdog) check() {
	if w.stopped.Load() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	since := now.Sub(time.Unix(0, w.last.Load()))
	if since >= w.idle {
		w.cancel(ErrIdleTimeout)
		return
	}
	if !now.Before(w.windowEnd) {
		got := w.bytes.Load() - w.mark
		if got < w.minBytes {
			w.cancel(fmt.Errorf("%d bytes in the last %s, under the minimum of %d: %w", got, w.window, w.minBytes, ErrTooSlow))
			return
		}
		// Tumbling windows: each must bring the minimum on its own.
		w.mark += got
		w.windowEnd = now.Add(w.window)
	}
	w.timer.Reset(min(w.idle-since, w.windowEnd.Sub(now)))
}

func (w *watchdog) got(n int) {
	w.last.Store(time.Now().UnixNano())
	w.bytes.Add(int64(n))
}

func (w *watchdog) stop() {
	w.stopped.Store(true)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func orDefaultDur(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

// redactURL drops userinfo so that a mistyped base URL never prints a password.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable)"
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	return u.String()
}
