package ops_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
)

// TestCheckLoginBlockedAtGateway: a gateway (WAF, API gateway) that passes
// only the paths qfetch fetches refuses /msp/about.php with its own page —
// a 403 or 405 as often as a 404 — while the detection calls go through.
// That answer is not Qualys' and says nothing about the login: the check
// must let the caller go on, or no worker ever becomes ready and the fleet
// never works although nothing is wrong. A 401 or 407 stays a refused login.
func TestCheckLoginBlockedAtGateway(t *testing.T) {
	sim := qualysim.New(qualysim.Config{Seed: 1, Hosts: 10})
	t.Cleanup(sim.Close)
	for _, tc := range []struct {
		status     int
		unverified bool
	}{
		{http.StatusForbidden, true},
		{http.StatusMethodNotAllowed, true},
		{http.StatusNotFound, true},
		{http.StatusUnauthorized, false},
		{http.StatusProxyAuthRequired, false},
	} {
		gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/msp/about.php" {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte("<html><body><h1>Request blocked</h1></body></html>"))
				return
			}
			sim.ServeHTTP(w, r)
		}))
		c, err := qualys.New(qualys.Config{BaseURL: gw.URL, Username: sim.Username(), Password: sim.Password(), ConnectTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		err = ops.CheckLogin(t.Context(), c)
		gw.Close()
		if errors.Is(err, ops.ErrLoginUnverified) != tc.unverified {
			t.Errorf("about.php %d from a gateway: %v (class %v), want unverified %v", tc.status, err, failure.ClassOf(err), tc.unverified)
		}
		if !tc.unverified && failure.ClassOf(err) != failure.ClassFleetWide {
			t.Errorf("about.php %d: class %v, want fleet-wide", tc.status, failure.ClassOf(err))
		}
	}
}
