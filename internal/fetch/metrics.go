package fetch

import (
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qualys"
)

// Metrics are a worker's Prometheus series. Labels carry classes, outcomes
// and codes only: never a run, a key or anything a secret could hide in.
type Metrics struct {
	batches   *prometheus.CounterVec // outcome, class
	bytes     prometheus.Counter
	inFlight  prometheus.Gauge
	responses *prometheus.CounterVec // status, code
	waited    prometheus.Counter
	upload    prometheus.Histogram
	faulted   prometheus.Gauge
	probes    *prometheus.CounterVec // result
}

// NewMetrics creates the series and registers them with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qfetch_worker_batches_total",
			Help: "Batches handled, by outcome (done, retried, delayed, dead-lettered, split, returned) and error class.",
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
			Help: "1 while this worker is paused by a fleet-wide fault.",
		}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qfetch_worker_fault_probes_total",
			Help: "Checks of Qualys and the bucket during a fleet-wide fault, by result (ok, failed).",
		}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.batches, m.bytes, m.inFlight, m.responses, m.waited, m.upload, m.faulted, m.probes)
	}
	return m
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
