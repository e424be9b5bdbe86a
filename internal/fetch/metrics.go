package fetch

import (
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/qualys"
)

// Metrics are a worker's Prometheus series. Labels carry classes, outcomes
// and codes only: never a run, a key or anything a secret could hide in.
type Metrics struct {
	batches    *prometheus.CounterVec // outcome, class
	bytes      prometheus.Counter
	inFlight   prometheus.Gauge
	responses  *prometheus.CounterVec // status, code
	waited     prometheus.Counter
	upload     prometheus.Histogram
	faulted    prometheus.Gauge
	probes     *prometheus.CounterVec // result
	paused     *prometheus.GaugeVec   // kind
	leasesLost prometheus.Counter
	// jsUnavailable is 1 while this worker finds JetStream unavailable.
	jsUnavailable prometheus.Gauge
	limits        map[string]prometheus.Gauge // by Qualys header
	// deadLetterFailures counts dead-letter records that could not be
	// written while NATS answered; wedged is how many messages failed
	// deadLetterTries times (the worker's wedges, read when scraped).
	deadLetterFailures prometheus.Counter
	wedged             prometheus.GaugeFunc
	wedgeSrc           atomic.Pointer[wedges]
}

// pauseKinds are the values of qfetch_worker_fleet_paused's kind label.
var pauseKinds = []string{"outage", "fault", "maintenance", "backpressure", "local"}

// limitGauges name the gauges of Qualys' limit headers.
var limitGauges = []struct{ name, help string }{
	{"qfetch_worker_qualys_rate_limit", "X-RateLimit-Limit of the last detection answer: calls allowed per window."},
	{"qfetch_worker_qualys_rate_window_seconds", "X-RateLimit-Window-Sec of the last detection answer."},
	{"qfetch_worker_qualys_rate_remaining", "X-RateLimit-Remaining of the last detection answer: calls left in the window."},
	{"qfetch_worker_qualys_concurrency_limit", "X-Concurrency-Limit-Limit of the last detection answer."},
	{"qfetch_worker_qualys_concurrency_running", "X-Concurrency-Limit-Running of the last detection answer, that call included."},
}

// NewMetrics creates the series and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qfetch_worker_batches_total",
			Help: "Batches handled, by outcome (done, retried, delayed, dead-lettered, split, returned, abandoned, late, drained) and error class.",
		}, []string{"outcome", "class"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qfetch_worker_stored_bytes_total",
			Help: "Bytes of detection responses stored.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qfetch_worker_calls_in_flight",
			Help: "Detection calls this process has in flight.",
		}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qfetch_worker_qualys_responses_total",
			Help: "Qualys detection answers by HTTP status and Qualys code (0: none).",
		}, []string{"status", "code"}),
		waited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qfetch_worker_backpressure_seconds_total",
			Help: "Seconds of delay Qualys asked for (409 concurrency and rate limits).",
		}),
		upload: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "qfetch_worker_upload_seconds",
			Help:    "Time to stream one detection response into the store.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 14),
		}),
		faulted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qfetch_worker_fleet_fault",
			Help: "1 while the fleet is paused by a fleet-wide fault (credentials, API access, the bucket) or this worker alone cannot record a pause; qfetch_worker_fleet_paused has every kind.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qfetch_worker_fault_probes_total",
			Help: "Probes (a one-host detection call and a bucket check) made by this worker while the fleet was paused, by result (ok, failed, unexpected).",
		}, []string{"result"}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "qfetch_worker_fleet_paused",
			Help: "1 while the fleet is paused, by kind: outage, fault (credentials, access, bucket), maintenance (Qualys 1999), backpressure (a hold until Qualys' wait is over), local (this worker alone: the fleet's state could not be written).",
		}, []string{"kind"}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qfetch_worker_leases_lost_total",
			Help: "Batches this worker gave up mid-call because their lease could not be shown alive (a partition, a disconnect).",
		}),
		jsUnavailable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qfetch_worker_jetstream_unavailable",
			Help: "1 while JetStream cannot serve this worker (a cluster without quorum or leader): it pulls nothing and reports not ready until JetStream answers again; nothing is charged to a batch.",
		}),
		limits: map[string]prometheus.Gauge{},
		deadLetterFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "qfetch_worker_dead_letter_failures_total",
			Help: "Dead-letter records this worker could not write while NATS answered (a dead-letter stream missing or refusing).",
		}),
	}
	m.wedged = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "qfetch_worker_wedged",
		Help: "Batch messages this worker failed to dead-letter several times in a row: while above 0 the worker reports not ready (/readyz) and such a message is tried again only every 16 probe periods.",
	}, func() float64 {
		ws := m.wedgeSrc.Load()
		if ws == nil {
			return 0
		}
		n, _ := ws.wedged()
		return float64(n)
	})
	for _, k := range pauseKinds {
		m.paused.WithLabelValues(k).Set(0)
	}
	cs := []prometheus.Collector{m.batches, m.bytes, m.inFlight, m.responses, m.waited, m.upload, m.faulted, m.probes, m.paused, m.leasesLost,
		m.jsUnavailable, m.deadLetterFailures, m.wedged}
	for _, g := range limitGauges {
		m.limits[g.name] = prometheus.NewGauge(prometheus.GaugeOpts{Name: g.name, Help: g.help})
		cs = append(cs, m.limits[g.name])
	}
	if reg != nil {
		reg.MustRegister(cs...)
	}
	return m
}

// observeLimits sets the limit gauges from the headers of a Qualys answer;
// an absent header leaves its gauge as it was.
func (m *Metrics) observeLimits(l qualys.Limits) {
	for name, v := range map[string]int{
		"qfetch_worker_qualys_rate_limit":          l.RateLimit,
		"qfetch_worker_qualys_rate_window_seconds": l.RateWindowSec,
		"qfetch_worker_qualys_rate_remaining":      l.RateRemaining,
		"qfetch_worker_qualys_concurrency_limit":   l.ConcurrencyLimit,
		"qfetch_worker_qualys_concurrency_running": l.ConcurrencyRunning,
	} {
		if v >= 0 {
			m.limits[name].Set(float64(v))
		}
	}
}

// setPause sets the pause gauges from the fleet's state and this worker's
// own pause.
func (m *Metrics) setPause(st ledger.FleetState, local error) {
	on := map[string]bool{"local": local != nil, "backpressure": time.Now().Before(st.HoldUntil)}
	if st.Pause != nil {
		on[string(st.Pause.Kind)] = true
	}
	for _, k := range pauseKinds {
		v := 0.0
		if on[k] {
			v = 1
		}
		m.paused.WithLabelValues(k).Set(v)
	}
	// The fault gauge keeps its meaning: a fault an operator must fix.
	if on["fault"] || on["local"] {
		m.faulted.Set(1)
	} else {
		m.faulted.Set(0)
	}
}

// observeResponse counts one Qualys answer: status and code from the error
// when there is one, else the status of the streamed answer.
func (m *Metrics) observeResponse(err error, status int) {
	code := 0
	var api qualys.APIError
	if errors.As(err, &api) {
		status, code = api.Status, api.Code
	} else if err != nil && failure.ClassOf(err) != failure.ClassUnknown && status == 0 {
		status = -1 // no answer: a transport failure
	}
	m.responses.WithLabelValues(strconv.Itoa(status), strconv.Itoa(code)).Inc()
}

// watchWedges makes qfetch_worker_wedged read ws.
func (m *Metrics) watchWedges(ws *wedges) { m.wedgeSrc.Store(ws) }
