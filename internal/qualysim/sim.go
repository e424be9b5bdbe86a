package qualysim

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint names one simulated API; limits, faults and stats are per API.
type Endpoint string

const (
	HostList  Endpoint = "hostlist"  // /api/<v>/fo/asset/host/
	Detection Endpoint = "detection" // /api/<v>/fo/asset/host/vm/detection/
	About     Endpoint = "about"     // /msp/about.php
	KB        Endpoint = "kb"        // /api/<v>/fo/knowledge_base/vuln/
)

type endpoint int

const (
	epHostList endpoint = iota
	epDetection
	epAbout
	epKB
	numEndpoints
)

var epNames = [numEndpoints]Endpoint{HostList, Detection, About, KB}

func (e Endpoint) index() (endpoint, bool) {
	for i, n := range epNames {
		if n == e {
			return endpoint(i), true
		}
	}
	return 0, false
}

// Sim is a simulated Qualys VM API. It is an http.Handler: mount it on an
// httptest.Server in tests or serve it with Serve. Safe for concurrent use.
type Sim struct {
	cfg    Config
	m      *model
	corpus *corpus
	kb     *kbModel
	clock  *Clock
	lim    [numEndpoints]*limiter
	faults faultState
	stats  [numEndpoints]epStats

	stalling atomic.Int64 // calls inside a stall fault now

	ctx    context.Context // cancelled by Close: ends stalls and slow starts
	cancel context.CancelFunc
	bufs   sync.Pool
}

// New builds a simulator. It panics on a Config that Validate rejects;
// callers taking settings from a user call Validate first.
func New(cfg Config) *Sim {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	s := &Sim{cfg: cfg, m: newModel(&cfg), corpus: newCorpus(cfg.Seed, max(cfg.ResultsSize, 0)), clock: cfg.Clock}
	s.kb = newKBModel(s.m, &cfg)
	if s.clock == nil {
		s.clock = NewClock(cfg.Start, false)
	}
	for i := range s.lim {
		s.lim[i] = newLimiter(cfg.ConcurrencyLimit, cfg.RateLimit, cfg.RateWindow)
	}
	s.faults.set(cfg.Faults)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.bufs.New = func() any { b := make([]byte, 0, flushAt+flushAt/2); return &b }
	return s
}

// Close ends every stall and slow start in progress and skips later ones,
// so that a server shutting down does not wait for them. Answers go on.
func (s *Sim) Close() { s.cancel() }

// Clock is the simulated clock.
func (s *Sim) Clock() *Clock { return s.clock }

// Advance moves the simulated clock forward by d and returns the new time.
func (s *Sim) Advance(d time.Duration) time.Time { return s.clock.Advance(d) }

// Username and Password are the credentials the simulator accepts.
func (s *Sim) Username() string { return s.cfg.Username }
func (s *Sim) Password() string { return s.cfg.Password }

// Config returns the effective configuration (defaults filled in).
func (s *Sim) Config() Config { return s.cfg }

// Faults returns the current fault settings.
func (s *Sim) Faults() Faults { return s.faults.get() }

// SetFaults replaces the fault settings; forced faults stay queued.
func (s *Sim) SetFaults(f Faults) error {
	f = f.withDefaults()
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.set(f)
	return nil
}

// SetAccountExpired switches the "account expired" answer (HTTP 200,
// SIMPLE_RETURN 2001) on or off for every API.
func (s *Sim) SetAccountExpired(on bool) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.cfg.AccountExpired = on
}

// SetRejectLogins makes every call fail with 401 "Bad Login/Password", as
// after a password rotation, or stops doing so.
func (s *Sim) SetRejectLogins(on bool) {
	s.faults.mu.Lock()
	defer s.faults.mu.Unlock()
	s.faults.cfg.RejectLogins = on
}

// ForceFault makes the next n calls to ep (HostList, Detection or KB) suffer
// kind, ahead of the random draw. Forced faults queue in order per API;
// FaultSlowStart and FaultBandwidth combine with an outcome fault.
func (s *Sim) ForceFault(ep Endpoint, kind FaultKind, n int) error {
	i, err := faultTarget(ep, kind)
	if err != nil {
		return err
	}
	s.faults.force(i, kind, n)
	return nil
}

// ClearForcedFaults drops every queued forced fault. Outages go on.
func (s *Sim) ClearForcedFaults() { s.faults.clearForced() }

// Outage makes every call to ep (HostList, Detection or KB) suffer kind from
// now until end is called: an outage measured in real time, not in calls,
// as a fleet meets it. Outcome outages take precedence over forced faults,
// which wait in their queue for the end; when outages of several outcome
// kinds overlap, the newest decides. FaultSlowStart and FaultBandwidth
// outages combine with the outcome. end may be called more than once.
// Outage panics on an endpoint or kind ForceFault would refuse, like New
// on a bad Config: both are the test's own mistake.
func (s *Sim) Outage(ep Endpoint, kind FaultKind) (end func()) {
	id, err := s.startOutage(ep, kind)
	if err != nil {
		panic(err)
	}
	var once sync.Once
	return func() { once.Do(func() { s.faults.endOutage(id) }) }
}

func (s *Sim) startOutage(ep Endpoint, kind FaultKind) (int, error) {
	i, err := faultTarget(ep, kind)
	if err != nil {
		return 0, err
	}
	return s.faults.startOutage(i, kind), nil
}

// EndOutages ends every outage, however it was started.
func (s *Sim) EndOutages() { s.faults.endOutage(0) }

// faultTarget checks an endpoint and a fault kind for ForceFault and Outage.
func faultTarget(ep Endpoint, kind FaultKind) (endpoint, error) {
	i, ok := ep.index()
	if !ok || i == epAbout {
		return 0, errors.New("qualysim: faults apply to the hostlist, detection and kb endpoints")
	}
	if !containsKind(AllFaults, kind) {
		return 0, errors.New("qualysim: unknown fault kind " + string(kind))
	}
	return i, nil
}

func containsKind(ks []FaultKind, k FaultKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// Running returns the calls to ep running now: admitted and not yet done.
func (s *Sim) Running(ep Endpoint) int {
	i, ok := ep.index()
	if !ok {
		return 0
	}
	r, _, _ := s.lim[i].snapshot(s.clock.Now())
	return r
}

// Stats returns a snapshot of what has been served.
func (s *Sim) Stats() Stats {
	now := s.clock.Now()
	st := Stats{Clock: now, Endpoints: map[Endpoint]EndpointStats{}}
	for i := range numEndpoints {
		e := s.stats[i].snapshot()
		e.Running, e.PeakRunning, e.RateUsed = s.lim[i].snapshot(now)
		st.Endpoints[epNames[i]] = e
	}
	return st
}

// ResetStats zeroes the counters and resets the peaks to what runs now.
// The rate window is left alone: it is the API's state, not a statistic.
func (s *Sim) ResetStats() {
	for i := range numEndpoints {
		s.stats[i].reset()
		s.lim[i].resetPeak()
	}
}

// route maps a request path to its API. The version segment may be any of
// the published ones.
func route(path string) (endpoint, bool) {
	if path == "/msp/about.php" {
		return epAbout, true
	}
	rest, ok := strings.CutPrefix(path, "/api/")
	if !ok {
		return 0, false
	}
	ver, rest, _ := strings.Cut(rest, "/")
	switch ver {
	case "2.0", "3.0", "4.0", "5.0":
	default:
		return 0, false
	}
	switch rest {
	case "fo/asset/host/":
		return epHostList, true
	case "fo/asset/host/vm/detection/":
		return epDetection, true
	case "fo/knowledge_base/vuln/":
		return epKB, true
	}
	return 0, false
}

// ServeHTTP answers the Qualys API paths and the /__sim/ control paths.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/__sim/") {
		s.serveControl(w, r)
		return
	}
	ep, ok := route(r.URL.Path)
	if !ok || (ep == epAbout && s.cfg.NoAbout) {
		http.NotFound(w, r)
		return
	}
	s.serveAPI(w, r, ep)
}

func (s *Sim) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/")
	}
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// maxBody bounds a POST form: a million IDs as a comma list fit.
const maxBody = 64 << 20

// readParams gathers the query and, for a form POST, the body, in order.
func readParams(r *http.Request) (params, error) {
	ps, err := parseParams(r.URL.RawQuery, nil)
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	if r.Method != http.MethodPost || (ct != "" && !strings.HasPrefix(ct, "application/x-www-form-urlencoded")) {
		return ps, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, errors.New("request body larger than 64 MiB")
	}
	return parseParams(string(body), ps)
}

func (s *Sim) checkLogin(r *http.Request, reject bool) bool {
	user, pass, ok := r.BasicAuth()
	if !ok || reject {
		return false
	}
	u := subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.Password))
	return u&p == 1
}

// writeDoc sends a small whole document, chunked like every Qualys answer.
func (st *epStats) writeDoc(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = http.NewResponseController(w).Flush()
	n, _ := w.Write(body)
	st.bytes.Add(int64(n))
}

// apiCall is one API call being answered: what the steps of serveAPI share,
// and the outcome its stats record ends with.
type apiCall struct {
	w       http.ResponseWriter
	r       *http.Request
	ep      endpoint
	st      *epStats
	now     time.Time
	base    string
	outcome string
	slowed  []string
	sink    *httpSink // set once the body streams
}

// record counts the call. It runs deferred, on the reset fault's panic too,
// when a fault that fired in the sink decides the outcome.
func (c *apiCall) record() {
	if c.sink != nil && c.sink.fired {
		c.outcome = "fault/" + string(c.sink.fault)
	}
	c.st.record(c.outcome, c.slowed...)
}

// doc answers with a whole small document.
func (c *apiCall) doc(outcome string, status int, contentType string, body []byte) {
	c.outcome = outcome
	c.st.writeDoc(c.w, status, contentType, body)
}

// refuse answers with a SIMPLE_RETURN; a 400 leaves out the XML
// declaration, as the recorded one does.
func (c *apiCall) refuse(e *apiError) {
	c.doc(strconv.Itoa(e.status)+"/"+strconv.Itoa(e.code), e.status, "application/xml",
		simpleReturn(c.base, c.now.Unix(), e.code, e.text, nil, e.status != 400))
}

// serveAPI answers one API call. The order of checks: credentials, account
// state, limits (concurrency before rate), X-Requested-With, parameters,
// faults; then the body streams. Every call after the limit check carries
// the limit headers; 401 and 2001 answers carry none, as recorded.
func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request, ep endpoint) {
	c := &apiCall{w: w, r: r, ep: ep, st: &s.stats[ep], now: s.clock.Now(), base: s.baseURL(r), outcome: "ok"}
	w.Header().Set("Server", "Qualys")
	defer c.record()

	if !s.admitAccount(c) {
		return
	}
	v := s.lim[ep].admit(c.now)
	v.setHeaders(w.Header())
	if !v.ok {
		refuseOverLimit(c, v)
		return
	}
	defer s.lim[ep].release()

	req, ok := s.readRequest(c)
	if !ok {
		return
	}
	p := s.faults.decide(s.m, ep)
	if s.stallsLaterPage(req, p, c.now) {
		p.outcome = FaultStall
	}
	if p.slowStart > 0 {
		c.slowed = append(c.slowed, string(FaultSlowStart))
	}
	if sleepCtx(r.Context(), s.ctx.Done(), s.thinkTime(req, c.now)+p.slowStart) != nil {
		c.outcome = "client_gone"
		return
	}
	if s.serveOutcomeFault(c, p) {
		return
	}
	s.streamBody(c, req, p)
}

// admitAccount answers a call the account may not make (wrong method, bad
// login, expired account) and reports whether the call goes on.
func (s *Sim) admitAccount(c *apiCall) bool {
	if c.r.Method != http.MethodGet && c.r.Method != http.MethodPost {
		c.outcome = "405"
		c.w.Header().Set("Allow", "GET, POST")
		http.Error(c.w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	s.faults.mu.Lock()
	reject, expired := s.faults.cfg.RejectLogins, s.faults.cfg.AccountExpired
	s.faults.mu.Unlock()
	if !s.checkLogin(c.r, reject) {
		c.w.Header().Set("WWW-Authenticate", `Basic realm="Qualys API"`)
		c.doc("401/2000", http.StatusUnauthorized, "application/xml",
			simpleReturn(c.base, c.now.Unix(), 2000, "Bad Login/Password", nil, true))
		return false
	}
	if expired {
		c.doc("200/2001", http.StatusOK, "text/xml;charset=UTF-8",
			simpleReturn(c.base, c.now.Unix(), 2001, "This account has expired.", nil, true))
		return false
	}
	return true
}

// refuseOverLimit answers a call the concurrency or rate limit turned away.
func refuseOverLimit(c *apiCall, v verdict) {
	it := item{"CALLS_TO_FINISH", strconv.Itoa(v.callsToFinish)}
	if v.code == 1965 {
		it = item{"SECONDS_TO_WAIT", strconv.Itoa(v.toWait)}
	}
	c.doc("409/"+strconv.Itoa(v.code), http.StatusConflict, "application/xml",
		simpleReturn(c.base, c.now.Unix(), v.code, v.refusalText(), []item{it}, true))
}

// readRequest checks the header and parameters of an admitted call. It
// answers about.php whole, and any call it refuses; ok means a Host List or
// detection answer is to be streamed for req.
func (s *Sim) readRequest(c *apiCall) (req *request, ok bool) {
	if c.ep != epAbout && c.r.Header.Get("X-Requested-With") == "" {
		// Qualys' answer to a missing header is unpublished
		// (qualys-api.md §9); a 400 that names it is the useful choice.
		c.refuse(&apiError{400, 1903, "Missing required parameter(s): X-Requested-With header (required for all API v2 calls)"})
		return nil, false
	}
	ps, err := readParams(c.r)
	if err != nil {
		c.refuse(&apiError{400, 1905, err.Error()})
		return nil, false
	}
	if c.ep == epAbout {
		c.st.writeDoc(c.w, http.StatusOK, "application/xml", aboutDoc(c.base))
		return nil, false
	}
	req, aerr := parseRequest(c.ep, ps)
	if aerr != nil {
		c.refuse(aerr)
		return nil, false
	}
	return req, true
}

// serveOutcomeFault answers with a fault that replaces the whole answer,
// if p drew one, and reports whether it did.
func (s *Sim) serveOutcomeFault(c *apiCall, p plan) bool {
	switch p.outcome {
	case Fault500:
		c.doc("fault/500", http.StatusInternalServerError, "text/html; charset=iso-8859-1", []byte(html500))
	case Fault503:
		c.outcome = "fault/503"
		if p.cfg.HTML503 {
			c.st.writeDoc(c.w, http.StatusServiceUnavailable, "text/html; charset=iso-8859-1", []byte(html503))
		} else {
			c.w.WriteHeader(http.StatusServiceUnavailable)
		}
	case FaultErrorDoc:
		code := p.cfg.ErrorDocCode
		c.doc("fault/errordoc", http.StatusOK, "application/xml",
			simpleReturn(c.base, c.now.Unix(), code, errorDocText(code), nil, true))
	case FaultMaintenance:
		c.doc("fault/maintenance", http.StatusServiceUnavailable, "application/xml",
			simpleReturn(c.base, c.now.Unix(), 1999, errorDocText(1999), nil, true))
	case Fault999:
		c.doc("fault/999", http.StatusInternalServerError, "application/xml",
			genericReturn(c.base, s.cfg.Username, c.now.Unix(), 999, "Internal error. Please contact customer support.", s.m.h2(sFault, p.seq, 5)))
	default:
		return false
	}
	return true
}

// streamBody sends the 200 header, then writes the Host List or detection
// document through a sink that applies p's mid-body fault and bandwidth.
func (s *Sim) streamBody(c *apiCall, req *request, p plan) {
	c.w.Header().Set("Content-Type", "application/xml")
	c.w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(c.w)
	if rc.Flush() != nil {
		c.outcome = "client_gone"
		return
	}
	sink := &httpSink{ctx: c.r.Context(), wake: s.ctx.Done(), w: c.w, rc: rc, bytes: &c.st.bytes, stalling: &s.stalling}
	c.sink = sink
	if p.outcome.midBody() {
		sink.fault, sink.at, sink.stallFor = p.outcome, p.offset, p.cfg.StallFor
	}
	if p.bandwidth > 0 {
		c.slowed = append(c.slowed, string(FaultBandwidth))
		sink.lim, sink.burst = newBandwidth(p.bandwidth)
	}
	bp := s.bufs.Get().(*[]byte)
	o := &out{buf: (*bp)[:0], sink: sink}
	pg := page{base: c.base, path: c.r.URL.Path, now: c.now.Unix()}
	switch c.ep {
	case epDetection:
		s.writeDetections(o, req, pg)
	case epKB:
		n := s.writeKB(o, req.kb, pg)
		if o.err == nil && req.kb.Details != "None" {
			c.st.vulns.Add(n)
		}
	default:
		s.writeHostList(o, req, pg)
	}
	*bp = o.buf[:0]
	s.bufs.Put(bp)
	if o.err != nil && !errors.Is(o.err, errCut) {
		c.outcome = "client_gone"
	}
}

// maxThink caps the think-time before an answer, so that PerHostCost over a
// huge unbounded request cannot overflow a Duration.
const maxThink = 24 * time.Hour

// thinkTime is how long req waits before its first byte: Overhead, plus
// PerHostCost for every host a detection call asks for, at most
// truncation_limit of them (Qualys stops gathering at a full page).
func (s *Sim) thinkTime(req *request, now time.Time) time.Duration {
	d, per := s.cfg.Overhead, s.cfg.PerHostCost
	if req.ep != epDetection || per <= 0 {
		return min(d, maxThink)
	}
	q := req.filter.compile(now, true)
	n := s.m.requested(&q)
	if req.limit > 0 {
		n = min(n, int64(req.limit))
	}
	if d >= maxThink || n >= int64((maxThink-d)/per) {
		return maxThink
	}
	return d + time.Duration(n)*per
}

// errorDocText is Qualys' text for the codes an error-document fault may use.
func errorDocText(code int) string {
	switch code {
	case 1981:
		return "Your request is being processed. Please try this same request again later."
	case 1999:
		return "We are performing scheduled maintenance on our System. We apologize for any inconvenience. Please try again later."
	case 999:
		return "Internal error. Please contact customer support."
	case 2001:
		return "This account has expired."
	}
	return "Error " + strconv.Itoa(code)
}
