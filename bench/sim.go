package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// detectionPath is the endpoint qfetch calls with QFETCH_QUALYS_API_VERSION 2.0.
const detectionPath = "/api/2.0/fo/asset/host/vm/detection/"

// simServer is a simulator served over loopback from this process.
type simServer struct {
	sim   *qualysim.Sim
	calls *callLog // every detection call, with its time and ids
	URL   string
	srv   *http.Server
	done  chan error
}

// simConfig is a subscription with no limits, on a clock frozen a minute in
// the past: every host is then processed before any window end the run
// picks, and every answer is the same byte for byte.
func simConfig(hosts int64) qualysim.Config {
	start := time.Now().Add(-time.Minute).Truncate(time.Second)
	return qualysim.Config{
		Seed:             1,
		Hosts:            hosts,
		Start:            start,
		Clock:            qualysim.NewClock(start, false),
		RateLimit:        qualysim.Off,
		ConcurrencyLimit: qualysim.Off,
	}
}

func serveSim(cfg qualysim.Config) (*simServer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sim := qualysim.New(cfg)
	s := &simServer{sim: sim, calls: &callLog{next: sim}, URL: qualysim.URL(ln), done: make(chan error, 1)}
	// Sim.Serve's server, with the call log in front of the simulator.
	s.srv = &http.Server{Handler: s.calls, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute}
	// Owned by s: stop waits for it.
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// stop ends stalls and slow starts at once (Sim.Close), gives calls in
// flight a few seconds, then cuts the rest, as Sim.Serve does.
func (s *simServer) stop() error {
	s.sim.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = s.srv.Close()
	}
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// ids are the first n hosts of the subscription, as a planner would batch them.
func (s *simServer) ids(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = s.sim.HostID(int64(i))
	}
	return out
}

// detectionForm is the request body a worker sends for a batch of ids with
// the window ending at before (no start: a first run).
func detectionForm(ids []uint64, before time.Time) string {
	return qualys.DetectionQuery{IDs: ids, ProcessedBefore: before}.Form().Encode()
}

// postDetections sends a detection request the way qfetch's client does.
func postDetections(ctx context.Context, hc *http.Client, baseURL, user, pass, form string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+detectionPath, strings.NewReader(form))
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Requested-With", "qfetch-bench")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("simulator answered %s: %s", resp.Status, body)
	}
	return resp, nil
}

// responseSize serves cfg and reads one whole batch answer, returning its size.
func responseSize(ctx context.Context, cfg qualysim.Config, hosts int) (int64, error) {
	s, err := serveSim(cfg)
	if err != nil {
		return 0, err
	}
	defer s.stop()
	resp, err := postDetections(ctx, http.DefaultClient, s.URL, s.sim.Username(), s.sim.Password(),
		detectionForm(s.ids(hosts), time.Now()))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(io.Discard, resp.Body)
}

// dataConfig returns a subscription whose batch of the first hosts hosts
// answers with about target bytes. Detections per host are set from the
// target, then ResultsSize is fitted on two measured sizes (the response is
// close to linear in it) and the result measured.
func dataConfig(ctx context.Context, target int64, hosts int) (qualysim.Config, int64, error) {
	// About 4.7 kB a detection at ResultsSize 4000: sets the count so
	// that RESULTS come out near that, the size of a long real one.
	mean := max(1, float64(target)/float64(hosts)/4700)
	cfg := simConfig(int64(hosts))
	cfg.ZeroDetectionFraction = qualysim.Off // every host in the batch answers
	cfg.MeanDetections = mean
	cfg.MaxDetections = min(65535, max(1000, int(4*mean)))
	size := func(results int) (int64, error) {
		c := cfg
		c.ResultsSize = results
		return responseSize(ctx, c, hosts)
	}
	r1, r2 := 1000, 4000
	s1, err := size(r1)
	if err != nil {
		return cfg, 0, err
	}
	s2, err := size(r2)
	if err != nil {
		return cfg, 0, err
	}
	if s2 <= s1 {
		return cfg, 0, fmt.Errorf("calibration: response does not grow with ResultsSize (%d, %d bytes)", s1, s2)
	}
	r := float64(r1) + float64(target-s1)*float64(r2-r1)/float64(s2-s1)
	cfg.ResultsSize = int(min(max(r, 16), 1<<20))
	got, err := size(cfg.ResultsSize)
	return cfg, got, err
}
