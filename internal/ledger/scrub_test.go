package ledger

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/qfetch/qfetch/internal/logging"
)

// TestRunErrorScrubbed (#17.7): a run record's Error is scrubbed before it
// is stored, whichever way it is written, so that neither the KV record
// (read by every role) nor status.json (copied from it) carries a
// credential the process holds or one a server echoed.
func TestRunErrorScrubbed(t *testing.T) {
	t.Parallel()
	const secret = "ledger-Held-Secret-77"
	logging.HoldBasic("svc", secret)
	basic := base64.StdEncoding.EncodeToString([]byte("svc:" + secret))
	dirty := `qualys /api/2.0/fo/asset/host/: 502 gateway; request=` +
		url.QueryEscape("Authorization: Basic "+basic) + ` via https://bob:` + secret + `@proxy:3128 pw ` + secret
	leaks := []string{secret, basic, url.QueryEscape(basic), "bob:"}

	e := setup(t, Config{})
	check := func(what string, r RunRecord) {
		t.Helper()
		raw, err := e.l.runs.Get(e.Ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, leak := range leaks {
			if strings.Contains(string(raw.Value()), leak) || strings.Contains(r.Error, leak) {
				t.Fatalf("%s: stored record holds %q: %s", what, leak, raw.Value())
			}
		}
		if !strings.Contains(string(raw.Value()), "[redacted]") || !strings.Contains(r.Error, "502 gateway") {
			t.Fatalf("%s: error not kept in scrubbed form: %s", what, raw.Value())
		}
		got, err := e.l.GetRun(e.Ctx, r.ID)
		if err != nil || got.Error != r.Error {
			t.Fatalf("%s: read back %q (%v), returned %q", what, got.Error, err, r.Error)
		}
	}

	created, err := e.l.CreateRun(e.Ctx, RunRecord{ID: "20250301T000000Z", After: testAfter, Before: testBefore,
		State: RunFailed, Error: dirty})
	if err != nil {
		t.Fatal(err)
	}
	check("CreateRun", created)

	r := newRun(t, e, "20250302T000000Z")
	updated, err := e.l.UpdateRun(e.Ctx, r.ID, func(r *RunRecord) error {
		r.State, r.Error = RunFailed, errors.New(dirty).Error()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check("UpdateRun", updated)
}
