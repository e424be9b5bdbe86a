package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// Keys in QFETCH_FLEET:
//
//	fleet   the FleetState: pause, hold and failure streak in one value, so
//	        that a trip, a settlement or a resume changes them together
//	probe   the probe lease: who may probe, until when
//
// Every write is a compare-and-set on the key's revision: what a pod
// decides from the fleet's state holds only if nobody changed it since the
// pod read it, however many pods decide at once.
const (
	fleetKey = "fleet"
	probeKey = "probe"

	// maxSuspects bounds the streak kept in the fleet key, so the value a
	// watch delivers to every pod stays small. The breaker trips long
	// before it fills unless one batch keeps failing alone.
	maxSuspects = 64
)

// PauseKind says why the fleet stopped pulling.
type PauseKind string

// Pause kinds. Each stops pulls fleet-wide until a probe passes.
const (
	// PauseOutage: failures over several batches with no success between.
	PauseOutage PauseKind = "outage"
	// PauseFault: a fleet-wide fault: credentials, API access, bucket.
	PauseFault PauseKind = "fault"
	// PauseMaintenance: Qualys' scheduled maintenance (1999).
	PauseMaintenance PauseKind = "maintenance"
)

func (k PauseKind) valid() bool {
	return k == PauseOutage || k == PauseFault || k == PauseMaintenance
}

// Pause is a fleet-wide stop of pulls, until a probe passes.
type Pause struct {
	Kind   PauseKind `json:"kind"`
	Reason string    `json:"reason"` // error text, already scrubbed by the caller
	Since  time.Time `json:"since"`
	By     string    `json:"by"`     // owner (pod) that set it
	Probes int       `json:"probes"` // failed probes since it was set
}

// Suspect is one charged failure in the streak: a batch (a Batch.Key) of a
// run.
type Suspect struct {
	Run   string `json:"run"`
	Batch string `json:"batch"`
	// After is the fleet key's revision the failure was added on top of:
	// only a call that started on a later revision proves Qualys worked
	// after it (see [Fleet.Succeeded]).
	After uint64 `json:"after,omitempty"`
}

// batchOf is the suspect's batch, whatever its revision.
func (x Suspect) batchOf() Suspect { return Suspect{Run: x.Run, Batch: x.Batch} }

// FleetState is the value of the fleet key: what every pod honours.
type FleetState struct {
	Pause      *Pause    `json:"pause,omitempty"`     // nil: no pause
	HoldUntil  time.Time `json:"hold_until,omitzero"` // back-pressure: no pulls before this
	HoldReason string    `json:"hold_reason,omitempty"`
	// Suspects are the charged failures since the last settlement, oldest
	// first; at most maxSuspects of them (see Failures).
	Suspects []Suspect `json:"suspects,omitempty"`
	// Failures is the streak's length. It exceeds len(Suspects) when the
	// list was bounded: a dropped suspect is a repeat of a batch still
	// listed, whose one charge then stands.
	Failures int       `json:"failures,omitempty"`
	Updated  time.Time `json:"updated,omitzero"`
	By       string    `json:"by,omitempty"` // owner of the last write
	// Revision is of the fleet key; 0 when absent.
	Revision uint64 `json:"-"`
}

// Paused reports whether pulls must wait at now: a pause, or a hold not yet
// over.
func (s FleetState) Paused(now time.Time) bool {
	return s.Pause != nil || now.Before(s.HoldUntil)
}

// clone copies s deeply, so that a caller cannot reach into the cache.
func (s FleetState) clone() FleetState {
	if s.Pause != nil {
		p := *s.Pause
		s.Pause = &p
	}
	s.Suspects = slices.Clone(s.Suspects)
	return s
}

// spread is the number of distinct batches among the suspects.
func (s FleetState) spread() int {
	seen := map[Suspect]bool{}
	for _, x := range s.Suspects {
		seen[x.batchOf()] = true
	}
	return len(seen)
}

// appendSuspect adds x to the streak, keeping at most maxSuspects: past
// that it drops the oldest suspect whose batch is listed again later, so
// the count of distinct batches the trip needs is kept.
func (s *FleetState) appendSuspect(x Suspect) {
	s.Suspects = append(s.Suspects, x)
	s.Failures++
	if len(s.Suspects) <= maxSuspects {
		return
	}
	drop := 0
	for i, y := range s.Suspects {
		if slices.ContainsFunc(s.Suspects[i+1:], func(z Suspect) bool { return z.batchOf() == y.batchOf() }) {
			drop = i
			break
		}
	}
	s.Suspects = slices.Delete(s.Suspects, drop, drop+1)
}

func (s *FleetState) clearStreak() {
	s.Suspects, s.Failures = nil, 0
}

// Fleet is one owner's (pod's) view of the fleet's shared state. It is safe
// for concurrent use.
type Fleet struct {
	kv    jetstream.KeyValue // nil when the bucket is not set up
	owner string

	mu        sync.Mutex
	state     FleetState
	seq       uint64 // stream sequence of state: only newer replaces it
	loaded    bool   // state was read at least once
	following bool   // a Follow keeps state current
	changed   chan struct{}
	// The probe lease as this pod saw it: its revision, and when (by this
	// pod's monotonic clock) it first saw it.
	probeRev  uint64
	probeSeen time.Time
}

// Fleet returns owner's handle on the fleet's state; owner names the pod in
// what it writes. On a ledger opened before QFETCH_FLEET was set up, every
// method fails with an error wrapping [msg.ErrNotSetUp].
func (l *Ledger) Fleet(owner string) *Fleet {
	return &Fleet{kv: l.fleet, owner: owner, changed: make(chan struct{})}
}

func (f *Fleet) bucket() error {
	if f.kv == nil {
		return failure.FleetWide(fmt.Errorf("ledger: bucket %s: %w", BucketFleet, msg.ErrNotSetUp))
	}
	return nil
}

// Snapshot is the last state seen, and a channel closed at the next change.
// Before the first read it is the zero state (no pause).
func (f *Fleet) Snapshot() (FleetState, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state.clone(), f.changed
}

// observe makes s, read or written at stream sequence seq (0: the key is
// absent), the cached state if it is newer than what the cache holds.
func (f *Fleet) observe(s FleetState, seq uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loaded && seq <= f.seq {
		return
	}
	f.state, f.seq, f.loaded = s.clone(), seq, true
	close(f.changed)
	f.changed = make(chan struct{})
}

// Follow keeps the snapshot current with a KV watch on the fleet key until
// ctx ends (then it returns nil), or returns the watch's error. Run it in a
// goroutine the worker owns.
func (f *Fleet) Follow(ctx context.Context) error {
	if err := f.bucket(); err != nil {
		return err
	}
	w, err := f.kv.Watch(ctx, fleetKey)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return msg.ClassifyAPI(fmt.Errorf("ledger: follow the fleet: %w", err))
	}
	defer func() { _ = w.Stop() }()
	defer func() {
		f.mu.Lock()
		f.following = false
		f.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok && ctx.Err() != nil:
				return nil
			case !ok:
				return failure.Retryable(errors.New("ledger: follow the fleet: the watch ended"))
			case e == nil: // the current value, if any, was delivered
				f.mu.Lock()
				f.following = true
				f.mu.Unlock()
				f.observe(FleetState{}, 0)
			case e.Operation() != jetstream.KeyValuePut:
				f.observe(FleetState{}, e.Revision())
			default:
				s, _ := decodeFleet(e.Value()) // garbled: empty, as read does
				s.Revision = e.Revision()
				f.observe(s, e.Revision())
			}
		}
	}
}

// State reads the fleet key now, not the cache (which it refreshes).
func (f *Fleet) State(ctx context.Context) (FleetState, error) {
	if err := f.bucket(); err != nil {
		return FleetState{}, err
	}
	s, err := f.read(ctx)
	if err != nil {
		return FleetState{}, err
	}
	return s.clone(), nil
}

func (f *Fleet) read(ctx context.Context) (FleetState, error) {
	e, err := f.kv.Get(ctx, fleetKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		f.observe(FleetState{}, 0)
		return FleetState{}, nil
	}
	if err != nil {
		return FleetState{}, msg.ClassifyAPI(fmt.Errorf("ledger: read the fleet state: %w", err))
	}
	// A garbled value (a forged or broken write) reads as the empty state
	// at its revision, so the next write replaces it by compare-and-set:
	// refusing it would switch the breaker and the pauses off (I6).
	s, _ := decodeFleet(e.Value())
	s.Revision = e.Revision()
	f.observe(s, e.Revision())
	return s, nil
}

// decodeFleet decodes the fleet key's value; a garbled one is the empty
// state and an error saying so.
func decodeFleet(v []byte) (FleetState, error) {
	var s FleetState
	if err := json.Unmarshal(v, &s); err != nil {
		return FleetState{}, failure.Permanent(fmt.Errorf(
			"ledger: the fleet state (key %s in %s) is garbled; it reads as empty and the next write replaces it: %w", fleetKey, BucketFleet, err))
	}
	return s, nil
}

// update changes the fleet key by compare-and-set: it reads the state, lets
// change decide on a copy from that state alone and the time, and writes
// the copy only if nobody wrote in between (else it reads and decides
// again). change returns false to write nothing; update then returns the
// state as read.
func (f *Fleet) update(ctx context.Context, what string, change func(s *FleetState, now time.Time) bool) (FleetState, error) {
	if err := f.bucket(); err != nil {
		return FleetState{}, err
	}
	for attempt := 1; attempt <= maxCASAttempts; attempt++ {
		cur, err := f.read(ctx)
		if err != nil {
			return FleetState{}, err
		}
		next := cur.clone()
		now := time.Now().UTC()
		if !change(&next, now) {
			return cur, nil
		}
		next.Updated, next.By = now, f.owner
		data, err := json.Marshal(next)
		if err != nil {
			return FleetState{}, err
		}
		var rev uint64
		if cur.Revision == 0 {
			rev, err = f.kv.Create(ctx, fleetKey, data)
		} else {
			rev, err = f.kv.Update(ctx, fleetKey, data, cur.Revision)
		}
		switch {
		case err == nil:
			next.Revision = rev
			f.observe(next, rev)
			return next, nil
		case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			if err := casPause(ctx, attempt); err != nil {
				return FleetState{}, err
			}
		default:
			return FleetState{}, msg.ClassifyAPI(fmt.Errorf("ledger: %s: %w", what, err))
		}
	}
	return FleetState{}, failure.Retryable(fmt.Errorf("ledger: %s: the fleet state is still contended after %d attempts", what, maxCASAttempts))
}

// FailOutcome is what [Fleet.Fail] did with a failure.
type FailOutcome int

// Fail outcomes.
const (
	// FailAppended: the failure joined the streak, which did not trip.
	FailAppended FailOutcome = iota
	// FailTripped: the failure joined the streak and tripped an outage
	// pause.
	FailTripped
	// FailPaused: a pause or hold was in force, nothing changed; the
	// caller forgives its own charge (a failure during a pause is the
	// fleet's, I6).
	FailPaused
)

func (o FailOutcome) String() string {
	switch o {
	case FailAppended:
		return "appended"
	case FailTripped:
		return "tripped"
	case FailPaused:
		return "paused"
	}
	return fmt.Sprintf("FailOutcome(%d)", int(o))
}

// Fail records a charged failure of s in the shared streak. If a pause or a
// hold is in force, nothing changes and it returns FailPaused. Otherwise it
// appends s; if the streak then holds at least breakAfter failures over at
// least two distinct batches, the same write sets an outage pause with
// reason and it returns FailTripped.
func (f *Fleet) Fail(ctx context.Context, s Suspect, breakAfter int, reason string) (FailOutcome, error) {
	if _, err := failKey(s.Run, s.Batch); err != nil {
		return 0, err
	}
	out := FailAppended
	_, err := f.update(ctx, "record a failure in the fleet's streak", func(st *FleetState, now time.Time) bool {
		if st.Paused(now) {
			out = FailPaused
			return false
		}
		s.After = st.Revision
		st.appendSuspect(s)
		out = FailAppended
		if st.Failures >= breakAfter && st.spread() >= 2 {
			st.Pause = &Pause{Kind: PauseOutage, Reason: reason, Since: now, By: f.owner}
			out = FailTripped
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

// Succeeded settles the streak after a success of a call that started
// when this pod's view of the fleet key was at revision since: the
// failures recorded before that (revision below since) stand charged —
// Qualys worked after them, so they were those batches' own. Failures
// recorded while the call ran stay suspects: a call that began before an
// outage may still end well, and must not charge the outage's first
// failures (I6). While [Fleet.Follow] runs and the snapshot shows no
// suspects it writes nothing, so successes cost no KV write in the common
// case.
func (f *Fleet) Succeeded(ctx context.Context, since uint64) error {
	if err := f.bucket(); err != nil {
		return err
	}
	f.mu.Lock()
	skip := f.following && f.loaded && f.state.Failures == 0 && len(f.state.Suspects) == 0
	f.mu.Unlock()
	if skip {
		return nil
	}
	_, err := f.update(ctx, "settle the fleet's streak", func(st *FleetState, _ time.Time) bool {
		kept := slices.DeleteFunc(slices.Clone(st.Suspects), func(x Suspect) bool { return x.After < since })
		settled := len(st.Suspects) - len(kept)
		if settled == 0 {
			return false
		}
		st.Suspects, st.Failures = kept, max(st.Failures-settled, len(kept))
		if len(kept) == 0 {
			st.clearStreak()
		}
		return true
	})
	return err
}

// Pause sets a pause of kind, unless one is in force (that one is kept,
// reason and all), and returns the state after.
func (f *Fleet) Pause(ctx context.Context, kind PauseKind, reason string) (FleetState, error) {
	if !kind.valid() {
		return FleetState{}, failure.Permanent(fmt.Errorf("ledger: pause kind %q is none of outage, fault, maintenance", kind))
	}
	s, err := f.update(ctx, "pause the fleet", func(st *FleetState, now time.Time) bool {
		if st.Pause != nil {
			return false
		}
		st.Pause = &Pause{Kind: kind, Reason: reason, Since: now, By: f.owner}
		return true
	})
	return s.clone(), err
}

// Hold stops pulls until until (back-pressure: the wait Qualys told), or
// later if a later hold is in force: the later wait wins. It probes
// nothing; the hold simply ends.
func (f *Fleet) Hold(ctx context.Context, until time.Time, reason string) error {
	until = until.UTC()
	_, err := f.update(ctx, "hold the fleet", func(st *FleetState, now time.Time) bool {
		if !until.After(now) || !until.After(st.HoldUntil) {
			return false
		}
		st.HoldUntil, st.HoldReason = until, reason
		return true
	})
	return err
}

// ProbeFailed records a failed probe: the pause's Probes counts it and its
// reason becomes reason. On the first failed probe of an outage pause the
// outage is real: it empties the streak and returns its suspects, whose
// charges the caller forgives (an outage charges no batch, I6). Without a
// pause it does nothing.
func (f *Fleet) ProbeFailed(ctx context.Context, reason string) ([]Suspect, error) {
	var forgive []Suspect
	_, err := f.update(ctx, "record a failed probe", func(st *FleetState, _ time.Time) bool {
		forgive = nil
		if st.Pause == nil {
			return false
		}
		if st.Pause.Kind == PauseOutage && st.Pause.Probes == 0 {
			forgive = st.Suspects
			st.clearStreak()
		}
		st.Pause.Probes++
		st.Pause.Reason = reason
		return true
	})
	if err != nil {
		return nil, err
	}
	return forgive, nil
}

// Resume ends the pause after a probe passed, and empties the streak: its
// charges stand (those batches failed on their own). Without a pause it
// does nothing; a hold is left to end by itself.
func (f *Fleet) Resume(ctx context.Context) error {
	resumed := false
	_, err := f.update(ctx, "resume the fleet", func(st *FleetState, _ time.Time) bool {
		resumed = st.Pause != nil
		if !resumed {
			return false
		}
		st.Pause = nil
		st.clearStreak()
		return true
	})
	if err != nil || !resumed {
		return err
	}
	// The probe claim ends with the pause it was for: the next pause must
	// be probed at once, not a period after this one's last probe.
	if err := f.kv.Delete(ctx, probeKey); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return msg.ClassifyAPI(fmt.Errorf("ledger: release the probe claim: %w", err))
	}
	return nil
}

// probeLease is the value of the probe key.
type probeLease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`            // by the holder's clock: for people reading it
	Period string    `json:"period,omitempty"` // how long it runs from when a pod first sees it
}

// ClaimProbe reports whether this owner may probe now: at most one owner
// per period, fleet-wide. The lease is taken by creating the probe key, or
// by replacing an expired lease on its revision; its expiry is in the value
// because the server's per-key TTLs have 1s granularity and a marker floor
// of a minute, too coarse for a probe period.
func (f *Fleet) ClaimProbe(ctx context.Context, period time.Duration) (bool, error) {
	if err := f.bucket(); err != nil {
		return false, err
	}
	if period <= 0 {
		return false, failure.Permanent(fmt.Errorf("ledger: probe period %s is not positive", period))
	}
	now := time.Now()
	data, err := json.Marshal(probeLease{Holder: f.owner, Until: now.UTC().Add(period), Period: period.String()})
	if err != nil {
		return false, err
	}
	e, err := f.kv.Get(ctx, probeKey)
	var rev uint64
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		rev, err = f.kv.Create(ctx, probeKey, data)
	case err != nil:
		return false, msg.ClassifyAPI(fmt.Errorf("ledger: claim the probe: %w", err))
	case !f.leaseOver(e, period, now):
		return false, nil
	default:
		rev, err = f.kv.Update(ctx, probeKey, data, e.Revision())
	}
	switch {
	case err == nil:
		f.mu.Lock()
		f.probeRev, f.probeSeen = rev, now
		f.mu.Unlock()
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return false, nil // another owner took it first
	default:
		return false, msg.ClassifyAPI(fmt.Errorf("ledger: claim the probe: %w", err))
	}
}

// KeepProbe renews this owner's probe claim for another period, so that
// nobody else probes while its probe still runs. It fails with ErrLockLost
// when the claim is no longer this owner's.
func (f *Fleet) KeepProbe(ctx context.Context, period time.Duration) error {
	if err := f.bucket(); err != nil {
		return err
	}
	f.mu.Lock()
	rev := f.probeRev
	f.mu.Unlock()
	now := time.Now()
	data, err := json.Marshal(probeLease{Holder: f.owner, Until: now.UTC().Add(period), Period: period.String()})
	if err != nil {
		return err
	}
	rev, err = f.kv.Update(ctx, probeKey, data, rev)
	switch {
	case err == nil:
		f.mu.Lock()
		f.probeRev, f.probeSeen = rev, now
		f.mu.Unlock()
		return nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyNotFound):
		return fmt.Errorf("ledger: keep the probe claim: %w", ErrLockLost)
	default:
		return msg.ClassifyAPI(fmt.Errorf("ledger: keep the probe claim: %w", err))
	}
}

// leaseOver reports whether the probe lease e is over. Pods' wall clocks
// disagree (one not yet synced, a VM resumed from a snapshot), so a lease
// is timed by this pod's own monotonic clock from when it first saw that
// revision: a lease it has not seen before runs a whole period from now,
// unless its holder's expiry is ten periods gone — further than any clock
// is off — or the value is garbled.
func (f *Fleet) leaseOver(e jetstream.KeyValueEntry, period time.Duration, now time.Time) bool {
	var held probeLease
	if json.Unmarshal(e.Value(), &held) != nil {
		return true
	}
	if d, err := time.ParseDuration(held.Period); err == nil && d > 0 {
		period = d
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if e.Revision() == f.probeRev {
		return now.Sub(f.probeSeen) >= period
	}
	f.probeRev, f.probeSeen = e.Revision(), now
	return now.Sub(held.Until) > 10*period
}
