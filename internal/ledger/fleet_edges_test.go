package ledger

// Cold review of issue #15: each test here fails on the code it was
// written against, for the reason its comment gives.

import (
	"encoding/json"
	"testing"
	"time"
)

// TestEdgeProbeLeaseSurvivesClockSkew: the probe lease's expiry is the
// claimant's wall clock plus the period, and every other pod compares it
// with its own wall clock. A pod whose clock runs a minute behind (NTP not
// yet synced after a node reboot, a VM resumed from a snapshot) writes a
// lease that every other pod reads as long expired, so two pods probe in
// the same period; a pod whose clock runs ahead takes over every lease at
// once. The lease should be timed by the server (the entry's own Created
// stamp against a server-side TTL, or a per-key TTL), not by two clocks.
func TestEdgeProbeLeaseSurvivesClockSkew(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const period = 30 * time.Second
	// What a pod whose clock is a minute behind writes when it claims the
	// probe: it probes now, for a period.
	lagging := probeLease{Holder: "pod-lagging", Until: time.Now().Add(-time.Minute).Add(period).UTC()}
	data, err := json.Marshal(lagging)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.fleet.Create(e.Ctx, probeKey, data); err != nil {
		t.Fatal(err)
	}
	ok, err := e.pod(t).Fleet("pod-b").ClaimProbe(e.Ctx, period)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Fatalf("pod-b claimed the probe a moment after pod-lagging took it for %s: two probes in one period", period)
	}
}
