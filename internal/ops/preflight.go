package ops

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
)

// The checks a planner runs before it opens a run and a worker before it
// pulls: `qfetch check`'s bucket and login checks, returning the error
// (with its class) instead of printing a line.

// probeKey is where a write check puts its probe object: under the prefix
// but outside runs/, so that no run's listing or manifest ever sees it,
// and named at random, so that checks running together never collide.
func probeKey(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return strings.TrimPrefix(strings.TrimSuffix(prefix, "/")+"/_qfetch-check/probe-"+hex.EncodeToString(b[:]), "/")
}

// CheckBucket checks that the bucket exists and that these credentials can
// write and delete under prefix: it writes a small probe object at
// <prefix>/_qfetch-check/ and deletes it. Existence alone proves nothing
// about writing (a read-only key, a bucket policy), and a write is the
// only proof S3 offers. The error keeps the store's class: a missing
// bucket or a refused write is fleet-wide.
func CheckBucket(ctx context.Context, s ProbeStore, prefix string) error {
	if err := s.Check(ctx); err != nil {
		return fmt.Errorf("bucket %s: %w", s.Describe(), err)
	}
	key := probeKey(prefix)
	if _, err := s.Put(ctx, key, strings.NewReader("qfetch check probe; safe to delete\n"), objstore.PutOptions{ContentType: "text/plain"}); err != nil {
		// The directory, not the random key: the text stays the same from
		// one try to the next, so the start checks log the fault once.
		return fmt.Errorf("bucket %s: writing a probe object under %s: %w", s.Describe(), path.Dir(key)+"/", err)
	}
	if err := s.Delete(ctx, key); err != nil {
		return fmt.Errorf("bucket %s: wrote the probe object %s but cannot delete it (delete it by hand): %w", s.Describe(), key, err)
	}
	return nil
}

// Login is the Qualys API as the login check uses it.
type Login interface {
	Check(ctx context.Context) (qualys.Limits, error)
}

// ErrLoginUnverified is matched (errors.Is) by CheckLogin's error when
// /msp/about.php answered in a way that says nothing about the login: a
// gateway's own 403, 404 or 405 (it passes only the API paths qfetch
// fetches), a 400, or a 409 (about.php's own limit in use). The caller
// goes on: the real calls decide, as for the fleet's probe.
var ErrLoginUnverified = errors.New("the Qualys login could not be verified")

// CheckLogin checks that the Qualys credentials log in, with one call of
// /msp/about.php. It is an API of its own with its own per-API counters
// (qualys-api.md §1.3, §6.1): it takes nothing from the detection API's
// concurrency or rate limit, so any number of pods may run it at once
// without pushing the fleet's detection calls above the cap (I5).
//
// The error is fleet-wide for a refused login (bad password, no API
// access, account expired), retryable when Qualys does not answer (a
// transport failure, a timeout, a 5xx, maintenance), and wraps
// ErrLoginUnverified for an answer that proves nothing either way.
func CheckLogin(ctx context.Context, api Login) error {
	_, err := api.Check(ctx)
	if err == nil {
		return nil
	}
	var a qualys.APIError
	answered := errors.As(err, &a)
	if answered && a.Code == 0 && slices.Contains([]int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed}, a.Status) {
		// Not Qualys' answer about the login: a gateway that serves only
		// the API paths qfetch fetches refuses the others with its own
		// 403, 404 or 405 (or a wrong URL, which the first real call
		// reports as a fleet-wide fault). Taken as a refused login it
		// would keep every worker from ever being ready.
		return fmt.Errorf("%w: /msp/about.php is not served there: %w", ErrLoginUnverified, err)
	}
	switch failure.ClassOf(err) {
	case failure.ClassFleetWide:
		return fmt.Errorf("the Qualys login failed (/msp/about.php): %w", err)
	case failure.ClassBackPressure:
		if errors.Is(err, qualys.ErrMaintenance) {
			return fmt.Errorf("the Qualys login check met scheduled maintenance (/msp/about.php): %w", err)
		}
	case failure.ClassRetryable:
		if !answered || a.Status >= 500 {
			return fmt.Errorf("no answer from Qualys to the login check (/msp/about.php): %w", err)
		}
	}
	if !answered || ctx.Err() != nil {
		// No answer at all (a timeout, a refused connection): not a proof.
		return failure.Retryable(fmt.Errorf("no answer from Qualys to the login check (/msp/about.php): %w", err))
	}
	return fmt.Errorf("%w: /msp/about.php answered %w", ErrLoginUnverified, err)
}
