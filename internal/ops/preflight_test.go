package ops_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/ops"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/qualysim"
	"github.com/qfetch/qfetch/internal/testrun"
)

// TestCheckBucket: the start check of the bucket passes only when the
// bucket exists and takes a write, leaves no probe object behind, and
// keeps the store's class (a missing bucket is fleet-wide: exit 3).
func TestCheckBucket(t *testing.T) {
	e := setup(t, 100)
	s3 := func(endpoint, bucket, secret string) ops.ProbeStore {
		st, err := objstore.NewS3(objstore.S3Config{Endpoint: endpoint, AccessKey: e.MinIO.AccessKey, SecretKey: secret, Bucket: bucket})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	tests := []struct {
		name  string
		store ops.ProbeStore
		class failure.Class // ClassUnknown with ok
		ok    bool
	}{
		{"writable", e.Store, failure.ClassUnknown, true},
		{"bucket missing", s3(e.MinIO.Endpoint, "no-such-bucket", e.MinIO.SecretKey), failure.ClassFleetWide, false},
		{"wrong secret", s3(e.MinIO.Endpoint, e.MinIO.Bucket, "wrong-secret-key-1234"), failure.ClassFleetWide, false},
		{"unreachable", s3(closedPort(t), e.MinIO.Bucket, e.MinIO.SecretKey), failure.ClassFleetWide, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ops.CheckBucket(t.Context(), tt.store, testrun.Prefix)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckBucket: %v, want ok %v", err, tt.ok)
			}
			if err != nil && failure.ClassOf(err) != tt.class {
				t.Errorf("class %v, want %v: %v", failure.ClassOf(err), tt.class, err)
			}
			if err != nil && strings.Contains(err.Error(), "wrong-secret-key-1234") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	var left []string
	for o := range e.MinIO.Client.ListObjects(t.Context(), e.MinIO.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		left = append(left, o.Key)
	}
	if len(left) != 0 {
		t.Errorf("the probe left objects behind: %v", left)
	}
}

// TestCheckLogin: about.php decides the login check, never a detection
// call; a refused login is fleet-wide, no answer is retryable, and an
// answer that proves nothing (404 at a gateway, 409) lets the caller go on.
func TestCheckLogin(t *testing.T) {
	sim := qualysim.New(qualysim.Config{Seed: 1, Hosts: 10})
	t.Cleanup(sim.Close)
	noAbout := qualysim.New(qualysim.Config{Seed: 1, Hosts: 10, NoAbout: true})
	t.Cleanup(noAbout.Close)
	srv, gw := httptest.NewServer(sim), httptest.NewServer(noAbout)
	t.Cleanup(srv.Close)
	t.Cleanup(gw.Close)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8" ?><SIMPLE_RETURN><RESPONSE><DATETIME>2026-01-10T00:00:00Z</DATETIME><CODE>1965</CODE><TEXT>This API cannot be run again for another 2 seconds.</TEXT></RESPONSE></SIMPLE_RETURN>`))
	}))
	t.Cleanup(busy.Close)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "<html><title>502 Bad Gateway</title></html>", http.StatusBadGateway)
	}))
	t.Cleanup(down.Close)

	tests := []struct {
		name       string
		url        string
		password   string
		reject     bool
		class      failure.Class
		unverified bool
		ok         bool
	}{
		{"logs in", srv.URL, sim.Password(), false, failure.ClassUnknown, false, true},
		{"wrong password", srv.URL, "not-the-password", false, failure.ClassFleetWide, false, false},
		{"logins rejected", srv.URL, sim.Password(), true, failure.ClassFleetWide, false, false},
		{"unreachable", "http://" + closedPort(t), sim.Password(), false, failure.ClassRetryable, false, false},
		{"5xx", down.URL, sim.Password(), false, failure.ClassRetryable, false, false},
		{"no about.php at a gateway", gw.URL, "not-the-password", false, failure.ClassUnknown, true, false},
		{"about.php busy", busy.URL, sim.Password(), false, failure.ClassBackPressure, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim.SetRejectLogins(tt.reject)
			c, err := qualys.New(qualys.Config{BaseURL: tt.url, Username: sim.Username(), Password: tt.password, ConnectTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			before := sim.Stats().Endpoints[qualysim.Detection].Requests
			err = ops.CheckLogin(t.Context(), c)
			if (err == nil) != tt.ok || errors.Is(err, ops.ErrLoginUnverified) != tt.unverified {
				t.Fatalf("CheckLogin: %v, want ok %v, unverified %v", err, tt.ok, tt.unverified)
			}
			if err != nil && !tt.unverified && failure.ClassOf(err) != tt.class {
				t.Errorf("class %v, want %v: %v", failure.ClassOf(err), tt.class, err)
			}
			if err != nil && strings.Contains(err.Error(), tt.password) {
				t.Errorf("the error shows the password: %v", err)
			}
			if n := sim.Stats().Endpoints[qualysim.Detection].Requests - before; n != 0 {
				t.Errorf("the login check made %d detection calls; it must take no detection slot (I5)", n)
			}
		})
	}
}
