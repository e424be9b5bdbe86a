package fetch

import (
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qfetch/qfetch/internal/logging"
)

// Handler serves /healthz (the process is alive), /readyz (connected to
// NATS and not paused by a fleet-wide fault) and /metrics.
func (w *Worker) Handler(reg *prometheus.Registry, connected func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(rw, "ok")
	})
	mux.HandleFunc("GET /readyz", func(rw http.ResponseWriter, _ *http.Request) {
		switch err := w.Ready(); {
		case !connected():
			http.Error(rw, "not connected to NATS", http.StatusServiceUnavailable)
		case err != nil:
			// The fault's text names endpoints and codes, never credentials.
			http.Error(rw, "fleet-wide fault: "+logging.Scrub(err.Error()), http.StatusServiceUnavailable)
		default:
			fmt.Fprintln(rw, "ready")
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}
