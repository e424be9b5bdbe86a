package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/runstat"
	"github.com/qfetch/qfetch/internal/testenv"
)

// checkStatus checks, for completed run id, that the worker processes
// report it: status.json in the bucket ends as complete with the manifest's
// totals, and every worker's /metrics counts it among the complete runs and
// serves the time it completed.
func (w *world) checkStatus(id string, got runContent, workers []*workerProc) {
	t := w.t
	t.Helper()
	var s runstat.Status
	testenv.Eventually(t, 30*time.Second, func() bool {
		r, err := w.store.Get(t.Context(), objstore.StatusKey(prefix, id))
		if err != nil {
			return false
		}
		defer r.Close()
		s = runstat.Status{}
		return json.NewDecoder(r).Decode(&s) == nil && s.State == ledger.RunComplete
	}, "status.json of run %s says complete", id)
	tot := got.Manifest.Totals
	if s.Run != id || s.BatchesDone != tot.Batches || s.BatchesPlanned != tot.Batches || s.Bytes != tot.Bytes ||
		s.HostsReturned != tot.HostsReturned || s.DeadLetters != 0 || s.Manifest != objstore.ManifestKey(prefix, id) {
		t.Errorf("status.json %+v; manifest totals %+v", s, tot)
	}
	completed := float64(got.Rec.Completed.UnixNano()) / 1e9
	for _, wp := range workers {
		testenv.Eventually(t, 30*time.Second, func() bool {
			m, err := wp.metrics()
			return err == nil && m[`qfetch_runs{state="complete"}`] >= 1 &&
				m["qfetch_last_complete_run_timestamp_seconds"] == completed && m["qfetch_dead_letters"] == 0
		}, "worker %s's /metrics report run %s complete", wp.Name, id)
		checkBuildInfo(t, wp)
	}
}

// checkBuildInfo checks that a worker's /metrics says which build it runs:
// e2e builds without -ldflags, with this test's toolchain.
func checkBuildInfo(t *testing.T, wp *workerProc) {
	t.Helper()
	m, err := wp.metrics()
	if err != nil {
		t.Fatal(err)
	}
	for key, v := range m {
		if !strings.HasPrefix(key, "qfetch_build_info{") {
			continue
		}
		if v != 1 || !strings.Contains(key, fmt.Sprintf("{goversion=%q}", runtime.Version())) ||
			!strings.Contains(key, `{version="dev"}`) || !strings.Contains(key, `{revision="`) {
			t.Errorf("worker %s: %s = %v", wp.Name, key, v)
		}
		return
	}
	t.Errorf("worker %s's /metrics has no qfetch_build_info", wp.Name)
}

// metrics scrapes the worker's /metrics into name{labels} → value.
func (wp *workerProc) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + wp.listen + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("/metrics: %d %s", resp.StatusCode, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf("{%s=%q}", l.GetName(), l.GetValue())
			}
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out, nil
}
