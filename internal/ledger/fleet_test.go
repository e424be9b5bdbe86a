package ledger

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/testenv"
)

const fleetRun = "20250301T000000Z"

func suspect(batch string) Suspect { return Suspect{Run: fleetRun, Batch: batch} }

// pod is a Ledger on a connection of its own, as another worker process
// has.
func (e *env) pod(t *testing.T) *Ledger {
	t.Helper()
	l, err := Open(e.Ctx, testenv.Connect(t, e.URL))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func batches(ss []Suspect) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Batch)
	}
	return out
}

// fleetStep is one thing a pod does in TestFleetFail: a failure of batch
// fail (then want is the outcome), a success, a pause of pause, or a hold.
type fleetStep struct {
	fail    string
	want    FailOutcome
	succeed bool
	pause   PauseKind
	hold    bool
}

func TestFleetFail(t *testing.T) {
	t.Parallel()
	fail := func(b string, want FailOutcome) fleetStep { return fleetStep{fail: b, want: want} }
	tests := []struct {
		name         string
		breakAfter   int
		steps        []fleetStep
		wantPause    PauseKind // "" for none
		wantSuspects []string
	}{{
		name:       "two batches trip at 2",
		breakAfter: 2,
		steps:      []fleetStep{fail("1", FailAppended), fail("2", FailTripped)},
		wantPause:  PauseOutage, wantSuspects: []string{"1", "2"},
	}, {
		name:       "one batch repeating never trips",
		breakAfter: 2,
		steps: []fleetStep{fail("1", FailAppended), fail("1", FailAppended), fail("1", FailAppended),
			fail("1", FailAppended), fail("1", FailAppended)},
		wantSuspects: []string{"1", "1", "1", "1", "1"},
	}, {
		name:       "a repeat then another batch trips",
		breakAfter: 2,
		steps:      []fleetStep{fail("1", FailAppended), fail("1", FailAppended), fail("2", FailTripped)},
		wantPause:  PauseOutage, wantSuspects: []string{"1", "1", "2"},
	}, {
		name:       "two batches short of breakAfter 3",
		breakAfter: 3,
		steps:      []fleetStep{fail("1", FailAppended), fail("2", FailAppended), fail("1", FailTripped)},
		wantPause:  PauseOutage, wantSuspects: []string{"1", "2", "1"},
	}, {
		name:         "a success between settles",
		breakAfter:   2,
		steps:        []fleetStep{fail("1", FailAppended), {succeed: true}, fail("2", FailAppended)},
		wantSuspects: []string{"2"},
	}, {
		name:       "tripped: later failures are the outage's",
		breakAfter: 2,
		steps:      []fleetStep{fail("1", FailAppended), fail("2", FailTripped), fail("3", FailPaused)},
		wantPause:  PauseOutage, wantSuspects: []string{"1", "2"},
	}, {
		name:       "paused: nothing appended",
		breakAfter: 2,
		steps:      []fleetStep{{pause: PauseFault}, fail("1", FailPaused), fail("2", FailPaused)},
		wantPause:  PauseFault,
	}, {
		name:       "maintenance keeps the streak before it",
		breakAfter: 2,
		steps:      []fleetStep{fail("1", FailAppended), {pause: PauseMaintenance}, fail("2", FailPaused)},
		wantPause:  PauseMaintenance, wantSuspects: []string{"1"},
	}, {
		name:       "hold in force: nothing appended",
		breakAfter: 2,
		steps:      []fleetStep{{hold: true}, fail("1", FailPaused), fail("2", FailPaused)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, Config{})
			f := e.l.Fleet("pod-a")
			for i, s := range tt.steps {
				var err error
				switch {
				case s.fail != "":
					var got FailOutcome
					got, err = f.Fail(e.Ctx, suspect(s.fail), tt.breakAfter, "503 from batch "+s.fail)
					if err == nil && got != s.want {
						t.Fatalf("step %d: Fail(%s) = %v, want %v", i, s.fail, got, s.want)
					}
				case s.succeed:
					err = f.Succeeded(e.Ctx, math.MaxUint64)
				case s.pause != "":
					_, err = f.Pause(e.Ctx, s.pause, "told to")
				case s.hold:
					err = f.Hold(e.Ctx, time.Now().Add(time.Hour), "1965")
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			st, err := f.State(e.Ctx)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tt.wantPause == "" && st.Pause != nil:
				t.Errorf("pause %+v, want none", st.Pause)
			case tt.wantPause != "" && (st.Pause == nil || st.Pause.Kind != tt.wantPause || st.Pause.By != "pod-a"):
				t.Errorf("pause %+v, want %s by pod-a", st.Pause, tt.wantPause)
			}
			if got := batches(st.Suspects); !slices.Equal(got, tt.wantSuspects) || st.Failures != len(tt.wantSuspects) {
				t.Errorf("suspects %v (failures %d), want %v", got, st.Failures, tt.wantSuspects)
			}
		})
	}
}

func TestFleetTripSetsOutageReason(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	f := e.l.Fleet("pod-a")
	for _, b := range []string{"1", "2"} {
		if _, err := f.Fail(e.Ctx, suspect(b), 2, "503 on "+b); err != nil {
			t.Fatal(err)
		}
	}
	st, err := f.State(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := st.Pause; p == nil || p.Reason != "503 on 2" || p.Probes != 0 || p.Since.IsZero() || !st.Paused(time.Now()) {
		t.Fatalf("pause after the trip: %+v", p)
	}
	if _, err := f.Fail(e.Ctx, Suspect{Run: "no such run!", Batch: "1"}, 2, ""); failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("Fail of a malformed run ID: %v", err)
	}
}

func TestFleetSucceededClears(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	f := e.l.Fleet("pod-a")
	// Without a Follow there is no cache to trust: a fresh Fleet clears
	// the streak another pod left.
	if _, err := e.pod(t).Fleet("pod-b").Fail(e.Ctx, suspect("1"), 2, "503"); err != nil {
		t.Fatal(err)
	}
	if err := f.Succeeded(e.Ctx, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	st, err := f.State(e.Ctx)
	if err != nil || len(st.Suspects) != 0 || st.Failures != 0 || st.Pause != nil {
		t.Fatalf("after a success: %+v, %v", st, err)
	}
	// Following, with no suspects in sight, a success writes nothing.
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan error, 1)
	go func() { done <- f.Follow(ctx) }()
	testenv.Eventually(t, 5*time.Second, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.following
	}, "Follow loaded the state")
	if err := f.Succeeded(e.Ctx, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	after, err := f.State(e.Ctx)
	if err != nil || after.Revision != st.Revision {
		t.Fatalf("a success with no streak wrote the key: revision %d, was %d (%v)", after.Revision, st.Revision, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow after its context ended: %v", err)
	}
}

func TestFleetProbeFailed(t *testing.T) {
	t.Parallel()
	t.Run("outage", func(t *testing.T) {
		t.Parallel()
		e := setup(t, Config{})
		f := e.l.Fleet("pod-a")
		if forgive, err := f.ProbeFailed(e.Ctx, "not paused"); err != nil || forgive != nil {
			t.Fatalf("ProbeFailed without a pause: %v, %v", forgive, err)
		}
		for _, b := range []string{"1", "1", "2"} {
			if _, err := f.Fail(e.Ctx, suspect(b), 2, "503"); err != nil {
				t.Fatal(err)
			}
		}
		forgive, err := f.ProbeFailed(e.Ctx, "probe: 503")
		if err != nil || !slices.Equal(batches(forgive), []string{"1", "1", "2"}) {
			t.Fatalf("first failed probe: forgive %v, %v", forgive, err)
		}
		forgive, err = f.ProbeFailed(e.Ctx, "probe: reset")
		if err != nil || forgive != nil {
			t.Fatalf("second failed probe: forgive %v, %v", forgive, err)
		}
		st, err := f.State(e.Ctx)
		if err != nil || st.Pause == nil || st.Pause.Kind != PauseOutage || st.Pause.Probes != 2 ||
			st.Pause.Reason != "probe: reset" || len(st.Suspects) != 0 || st.Failures != 0 {
			t.Fatalf("after two failed probes: %+v (pause %+v), %v", st, st.Pause, err)
		}
	})
	t.Run("fault", func(t *testing.T) {
		t.Parallel()
		e := setup(t, Config{})
		f := e.l.Fleet("pod-a")
		if _, err := f.Fail(e.Ctx, suspect("1"), 2, "503"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Pause(e.Ctx, PauseFault, "401"); err != nil {
			t.Fatal(err)
		}
		// A fault is no outage: the failure before it was the batch's.
		forgive, err := f.ProbeFailed(e.Ctx, "probe: 401")
		if err != nil || forgive != nil {
			t.Fatalf("failed probe of a fault: forgive %v, %v", forgive, err)
		}
		st, err := f.State(e.Ctx)
		if err != nil || st.Pause.Probes != 1 || !slices.Equal(batches(st.Suspects), []string{"1"}) {
			t.Fatalf("after a failed probe of a fault: %+v, %v", st, err)
		}
	})
}

func TestFleetResume(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	f := e.l.Fleet("pod-a")
	for _, b := range []string{"1", "2"} {
		if _, err := f.Fail(e.Ctx, suspect(b), 2, "503"); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Hold(e.Ctx, time.Now().Add(time.Hour), "1960"); err != nil {
		t.Fatal(err)
	}
	if err := f.Resume(e.Ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.State(e.Ctx)
	if err != nil || st.Pause != nil || len(st.Suspects) != 0 || st.Failures != 0 {
		t.Fatalf("after Resume: %+v, %v", st, err)
	}
	if !st.Paused(time.Now()) || st.HoldReason != "1960" {
		t.Errorf("Resume ended the hold: %+v", st)
	}
	if err := f.Resume(e.Ctx); err != nil {
		t.Fatal(err)
	}
	if again, err := f.State(e.Ctx); err != nil || again.Revision != st.Revision {
		t.Errorf("Resume without a pause wrote: revision %d, was %d (%v)", again.Revision, st.Revision, err)
	}
}

func TestFleetPauseKeepsTheOneInForce(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	a, b := e.l.Fleet("pod-a"), e.pod(t).Fleet("pod-b")
	st, err := a.Pause(e.Ctx, PauseMaintenance, "1999")
	if err != nil || st.Pause == nil || st.Pause.Kind != PauseMaintenance || st.Revision == 0 {
		t.Fatalf("Pause: %+v, %v", st, err)
	}
	got, err := b.Pause(e.Ctx, PauseFault, "401")
	if err != nil || got.Pause.Kind != PauseMaintenance || got.Pause.By != "pod-a" || got.Revision != st.Revision {
		t.Fatalf("second Pause: %+v (pause %+v), %v", got, got.Pause, err)
	}
	if _, err := a.Pause(e.Ctx, "nap", ""); failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("Pause of an unknown kind: %v", err)
	}
}

func TestFleetHoldLaterWins(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	f := e.l.Fleet("pod-a")
	now := time.Now().UTC().Truncate(time.Second)
	steps := []struct {
		until      time.Time
		reason     string
		wantUntil  time.Time
		wantReason string
	}{
		{now.Add(2 * time.Minute), "1965", now.Add(2 * time.Minute), "1965"},
		{now.Add(time.Minute), "409", now.Add(2 * time.Minute), "1965"},
		{now.Add(3 * time.Minute), "1960", now.Add(3 * time.Minute), "1960"},
		{now.Add(-time.Minute), "past", now.Add(3 * time.Minute), "1960"},
	}
	for i, s := range steps {
		if err := f.Hold(e.Ctx, s.until, s.reason); err != nil {
			t.Fatal(err)
		}
		st, err := f.State(e.Ctx)
		if err != nil || !st.HoldUntil.Equal(s.wantUntil) || st.HoldReason != s.wantReason {
			t.Fatalf("step %d: hold until %v (%s), want %v (%s); %v", i, st.HoldUntil, st.HoldReason, s.wantUntil, s.wantReason, err)
		}
		if !st.Paused(now) || st.Paused(now.Add(4*time.Minute)) || st.Pause != nil {
			t.Errorf("step %d: Paused before/after the hold wrong: %+v", i, st)
		}
	}
}

func TestFleetClaimProbe(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const pods = 6
	// Long enough that no contender of one round reads the lease after
	// it expired, even on a loaded machine.
	const period = time.Second
	fleets := make([]*Fleet, pods)
	for i := range fleets {
		fleets[i] = e.pod(t).Fleet(fmt.Sprintf("pod-%d", i))
	}
	race := func() (winners []int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, f := range fleets {
			wg.Go(func() {
				<-start
				ok, err := f.ClaimProbe(e.Ctx, period)
				if err != nil {
					t.Errorf("pod %d: ClaimProbe: %v", i, err)
				}
				if ok {
					mu.Lock()
					winners = append(winners, i)
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		return winners
	}
	for round := range 2 {
		winners := race()
		ended := time.Now()
		if len(winners) != 1 {
			t.Fatalf("round %d: %d pods claimed the probe (%v), want 1", round, len(winners), winners)
		}
		if ok, err := fleets[winners[0]].ClaimProbe(e.Ctx, period); err != nil || ok {
			t.Fatalf("round %d: the holder claimed again within its period: %v, %v", round, ok, err)
		}
		// The lease ends a period after it was taken, before the race
		// ended: wait that out.
		<-time.After(time.Until(ended.Add(period)))
	}
	if _, err := fleets[0].ClaimProbe(e.Ctx, 0); failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("ClaimProbe with no period: %v", err)
	}
}

func TestFleetFollow(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	watcher, writer := e.l.Fleet("pod-a"), e.pod(t).Fleet("pod-b")
	ctx, cancel := context.WithCancel(e.Ctx)
	done := make(chan error, 1)
	go func() { done <- watcher.Follow(ctx) }()
	// await waits on the snapshot's channel until cond holds.
	await := func(what string, cond func(FleetState) bool) FleetState {
		t.Helper()
		for {
			s, changed := watcher.Snapshot()
			if cond(s) {
				return s
			}
			select {
			case <-changed:
			case err := <-done:
				t.Fatalf("Follow ended awaiting %s: %v", what, err)
			case <-e.Ctx.Done():
				t.Fatalf("not seen: %s", what)
			}
		}
	}
	if _, err := writer.Pause(e.Ctx, PauseMaintenance, "1999"); err != nil {
		t.Fatal(err)
	}
	s := await("the pause", func(s FleetState) bool { return s.Pause != nil })
	if s.Pause.Kind != PauseMaintenance || s.Pause.By != "pod-b" || s.Revision == 0 || !s.Paused(time.Now()) {
		t.Errorf("snapshot: %+v, pause %+v", s, s.Pause)
	}
	// The snapshot is a copy: changing it changes no cache.
	s.Pause.Kind = PauseFault
	if again, _ := watcher.Snapshot(); again.Pause.Kind != PauseMaintenance {
		t.Errorf("the snapshot shares its pause with the cache")
	}
	if err := writer.Resume(e.Ctx); err != nil {
		t.Fatal(err)
	}
	await("the resume", func(s FleetState) bool { return s.Pause == nil })
	// An operator purging the key resets the fleet.
	if err := e.pod(t).fleet.Purge(e.Ctx, fleetKey); err != nil {
		t.Fatal(err)
	}
	if err := writer.Hold(e.Ctx, time.Now().Add(time.Hour), "1965"); err != nil {
		t.Fatal(err)
	}
	await("the hold after a purge", func(s FleetState) bool { return s.HoldReason == "1965" })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Follow after its context ended: %v", err)
	}
}

// TestFleetConcurrentFail: six pods appending at once lose no failure.
func TestFleetConcurrentFail(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const pods, each = 6, 8
	var wg sync.WaitGroup
	for p := range pods {
		f := e.pod(t).Fleet(fmt.Sprintf("pod-%d", p))
		wg.Go(func() {
			for i := range each {
				got, err := f.Fail(e.Ctx, suspect(fmt.Sprintf("%d", p*each+i+1)), 1000, "503")
				if err != nil || got != FailAppended {
					t.Errorf("pod %d: Fail: %v, %v", p, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := e.l.Fleet("reader").State(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Failures != pods*each || len(st.Suspects) != pods*each {
		t.Fatalf("streak of %d failures, %d suspects; want %d", st.Failures, len(st.Suspects), pods*each)
	}
	seen := map[Suspect]bool{}
	for _, s := range st.Suspects {
		seen[s] = true
	}
	if len(seen) != pods*each {
		t.Errorf("%d distinct suspects, want %d", len(seen), pods*each)
	}
}

// TestFleetConcurrentTrip: six pods failing at once trip the breaker once;
// every failure after the trip is told FailPaused (its pod forgives its own
// charge), so what stays charged is exactly the streak, and the first
// failed probe hands that streak to one pod alone.
func TestFleetConcurrentTrip(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const pods = 6
	fleets := make([]*Fleet, pods)
	for i := range fleets {
		fleets[i] = e.pod(t).Fleet(fmt.Sprintf("pod-%d", i))
	}
	outcomes := make([]FailOutcome, pods)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, f := range fleets {
		wg.Go(func() {
			<-start
			var err error
			outcomes[i], err = f.Fail(e.Ctx, suspect(fmt.Sprintf("%d", i+1)), 2, "503")
			if err != nil {
				t.Errorf("pod %d: Fail: %v", i, err)
			}
		})
	}
	close(start)
	wg.Wait()
	var tripped, charged []string
	for i, o := range outcomes {
		if o == FailTripped {
			tripped = append(tripped, fmt.Sprint(i+1))
		}
		if o != FailPaused {
			charged = append(charged, fmt.Sprint(i+1))
		}
	}
	st, err := fleets[0].State(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(tripped) != 1 || st.Pause == nil || len(st.Suspects) != 2 {
		t.Fatalf("outcomes %v: tripped by %v, state %+v", outcomes, tripped, st)
	}
	got := batches(st.Suspects)
	slices.Sort(got)
	if !slices.Equal(got, charged) {
		t.Errorf("streak %v, but the pods kept charges for %v", got, charged)
	}
	forgiven := make([][]Suspect, pods)
	for i, f := range fleets {
		wg.Go(func() {
			var err error
			if forgiven[i], err = f.ProbeFailed(e.Ctx, "probe: 503"); err != nil {
				t.Errorf("pod %d: ProbeFailed: %v", i, err)
			}
		})
	}
	wg.Wait()
	var all []Suspect
	for _, f := range forgiven {
		all = append(all, f...)
	}
	if !slices.EqualFunc(all, st.Suspects, func(a, b Suspect) bool { return a.batchOf() == b.batchOf() }) {
		t.Errorf("failed probes forgave %v, want the streak %v once", all, st.Suspects)
	}
}

func TestAppendSuspectBounded(t *testing.T) {
	tests := []struct {
		name       string
		batches    []string
		wantLen    int
		wantSpread int
		wantFirst  string
	}{
		{"under the bound", []string{"1", "2", "1"}, 3, 2, "1"},
		{"a lone batch, then a repeating one", append([]string{"7"}, slices.Repeat([]string{"1"}, 100)...), maxSuspects, 2, "7"},
		{"repeats drop oldest first", slices.Repeat([]string{"1", "2"}, 40), maxSuspects, 2, "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s FleetState
			for _, b := range tt.batches {
				s.appendSuspect(suspect(b))
			}
			if len(s.Suspects) != tt.wantLen || s.Failures != len(tt.batches) || s.spread() != tt.wantSpread ||
				s.Suspects[0].Batch != tt.wantFirst {
				t.Errorf("%d suspects from %s, %d failures, spread %d", len(s.Suspects), s.Suspects[0].Batch, s.Failures, s.spread())
			}
		})
	}
}

// TestOpenWithoutFleetBucket: a deployment set up before QFETCH_FLEET still
// opens for operator commands; the fleet's methods say it is not set up,
// and the next Setup creates the bucket.
func TestOpenWithoutFleetBucket(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	newRun(t, e, fleetRun)
	if err := e.JS.DeleteKeyValue(e.Ctx, BucketFleet); err != nil {
		t.Fatal(err)
	}
	l, err := Open(e.Ctx, e.JS)
	if err != nil {
		t.Fatalf("Open without %s: %v", BucketFleet, err)
	}
	if ids, err := l.RunIDs(e.Ctx); err != nil || !slices.Equal(ids, []string{fleetRun}) {
		t.Fatalf("RunIDs: %v, %v", ids, err)
	}
	f := l.Fleet("ops")
	if _, err := f.State(e.Ctx); !errors.Is(err, msg.ErrNotSetUp) {
		t.Errorf("State without the bucket: %v", err)
	}
	if err := f.Follow(e.Ctx); !errors.Is(err, msg.ErrNotSetUp) {
		t.Errorf("Follow without the bucket: %v", err)
	}
	findings, err := Inspect(e.Ctx, e.JS, Config{})
	if err != nil || len(findings) != 5 || findings[3].Object != "bucket "+BucketFleet || findings[3].Problem == "" {
		t.Fatalf("Inspect: %+v, %v", findings, err)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
		t.Fatal(err)
	}
	l, err = Open(e.Ctx, e.JS)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Fleet("ops").State(e.Ctx); err != nil {
		t.Errorf("State after Setup: %v", err)
	}
}

func TestForgiveFailure(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	count := func() int {
		t.Helper()
		n, err := e.l.FailureCount(e.Ctx, fleetRun, "3")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("count of a batch never charged: %d", n)
	}
	if err := e.l.ForgiveFailure(e.Ctx, fleetRun, "3"); err != nil || count() != 0 {
		t.Fatalf("forgiving an uncharged batch: %v, count %d", err, count())
	}
	for range 2 {
		if _, err := e.l.CountFailure(e.Ctx, fleetRun, "3"); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []int{1, 0, 0} {
		if err := e.l.ForgiveFailure(e.Ctx, fleetRun, "3"); err != nil || count() != want {
			t.Fatalf("forgive %d: %v, count %d, want %d", i+1, err, count(), want)
		}
	}
	if n, err := e.l.CountFailure(e.Ctx, fleetRun, "3"); err != nil || n != 1 {
		t.Fatalf("charge after forgiving all: %d, %v", n, err)
	}
	if err := e.l.ForgiveFailure(e.Ctx, "bad run!", "3"); failure.ClassOf(err) != failure.ClassPermanent {
		t.Errorf("ForgiveFailure of a malformed run ID: %v", err)
	}
	if err := e.l.ResetFailures(e.Ctx, fleetRun, "3"); err != nil {
		t.Fatal(err)
	}
	if err := e.l.ForgiveFailure(e.Ctx, fleetRun, "3"); err != nil || count() != 0 {
		t.Fatalf("forgiving a reset batch: %v, count %d", err, count())
	}
}

// TestForgiveFailureConcurrent: pods charging and forgiving one batch at
// once end on the exact balance. Each pod forgives only after charging
// twice, so the floor at 0 never absorbs a forgiveness.
func TestForgiveFailureConcurrent(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	const pods, rounds = 6, 5
	var wg sync.WaitGroup
	for p := range pods {
		l := e.pod(t)
		wg.Go(func() {
			for range rounds {
				for range 2 {
					if _, err := l.CountFailure(e.Ctx, fleetRun, "9"); err != nil {
						t.Errorf("pod %d: CountFailure: %v", p, err)
						return
					}
				}
				if err := l.ForgiveFailure(e.Ctx, fleetRun, "9"); err != nil {
					t.Errorf("pod %d: ForgiveFailure: %v", p, err)
					return
				}
			}
		})
	}
	wg.Wait()
	n, err := e.l.FailureCount(e.Ctx, fleetRun, "9")
	if err != nil || n != pods*rounds {
		t.Fatalf("count %d, %v; want %d", n, err, pods*rounds)
	}
	all, err := e.l.Failures(e.Ctx, fleetRun)
	if err != nil || all["9"] != pods*rounds {
		t.Fatalf("Failures: %v, %v", all, err)
	}
}

// TestFleetSuccessSettlesOnlyEarlierFailures: a call that began before a
// failure was recorded proves nothing about it (an outage may start while
// the call streams): its success leaves that failure a suspect, and a call
// begun after it settles it.
func TestFleetSuccessSettlesOnlyEarlierFailures(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	f := e.l.Fleet("pod-a")
	before, err := f.State(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pod(t).Fleet("pod-b").Fail(e.Ctx, suspect("1"), 2, "503"); err != nil {
		t.Fatal(err)
	}
	if err := f.Succeeded(e.Ctx, before.Revision); err != nil {
		t.Fatal(err)
	}
	st, err := f.State(e.Ctx)
	if err != nil || !slices.Equal(batches(st.Suspects), []string{"1"}) || st.Failures != 1 {
		t.Fatalf("a call begun before the failure settled it: %+v, %v", st, err)
	}
	if err := f.Succeeded(e.Ctx, st.Revision); err != nil {
		t.Fatal(err)
	}
	if st, err = f.State(e.Ctx); err != nil || len(st.Suspects) != 0 || st.Failures != 0 {
		t.Fatalf("a call begun after the failure left it: %+v, %v", st, err)
	}
}
