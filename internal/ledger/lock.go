package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// A lock is the key <name> in QFETCH_LOCKS (the status writer's in
// QFETCH_STATUS_LOCK, see BucketStatusLock), created only if absent and
// written with a per-message TTL (the bucket has limit markers, so the server
// removes an expired lock by itself). Each refresh rewrites it with a fresh
// TTL under compare-and-set on the holder's revision. KeyValue.Update cannot
// do that: it writes without a TTL, which would make the lock permanent.

// Lock errors.
var (
	// ErrLocked is wrapped by Acquire when another owner holds the lock; the
	// error is a *[HeldError] naming the holder.
	ErrLocked = errors.New("lock is held")
	// ErrLockLost means the lock expired or was taken by someone else.
	ErrLockLost = errors.New("lock lost")
)

// LockInfo is the value of a lock key.
type LockInfo struct {
	Owner     string    `json:"owner"`
	Acquired  time.Time `json:"acquired"`
	Refreshed time.Time `json:"refreshed"`
	TTL       string    `json:"ttl"`
}

// HeldError reports who holds a lock.
type HeldError struct {
	Name   string
	Holder LockInfo
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lock %s is held by %s since %s (refreshed %s)", e.Name, e.Holder.Owner,
		e.Holder.Acquired.Format(time.RFC3339), e.Holder.Refreshed.Format(time.RFC3339))
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *HeldError) Is(target error) bool { return target == ErrLocked }

// Lock is a held lock. Keep it alive with [Lock.Keep] (or [Lock.Refresh]),
// and [Lock.Release] it when done; if the holder dies, it expires after its
// TTL.
type Lock struct {
	kv      jetstream.KeyValue
	js      jetstream.JetStream
	name    string
	key     string
	ttl     time.Duration
	subject string

	mu     sync.Mutex
	rev    uint64
	info   LockInfo
	lastOK time.Time
}

// Acquire takes lock name for owner (a description for operators, such as
// "planner pod-x run 20250101T000000Z"), for ttl (at least 1s, whole
// seconds). If someone else holds it, the error is a *[HeldError] wrapping
// [ErrLocked].
func (led *Ledger) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (*Lock, error) {
	if !msg.ValidRunID(name) {
		return nil, failure.Permanent(fmt.Errorf("ledger: lock name %q is not 1-64 letters, digits, '-' or '_'", name))
	}
	if ttl < time.Second {
		return nil, failure.Permanent(fmt.Errorf("ledger: lock TTL %s is below the server's 1s resolution", ttl))
	}
	ttl = ttl.Round(time.Second)
	kv, bucket := led.locks, BucketLocks
	if name == StatusWriterLock {
		kv, bucket = led.statusLock, BucketStatusLock
	}
	if kv == nil {
		return nil, failure.FleetWide(fmt.Errorf("ledger: lock %s: bucket %s: %w", name, bucket, msg.ErrNotSetUp))
	}
	l := &Lock{
		kv:      kv,
		js:      led.js,
		name:    name,
		key:     name,
		ttl:     ttl,
		subject: "$KV." + bucket + "." + name,
	}
	now := time.Now().UTC()
	l.info = LockInfo{Owner: owner, Acquired: now, Refreshed: now, TTL: ttl.String()}
	data, err := json.Marshal(l.info)
	if err != nil {
		return nil, err
	}
	// Two tries: the holder's lock may expire between our Create and Get.
	for range 2 {
		rev, err := l.kv.Create(ctx, l.key, data, jetstream.KeyTTL(ttl))
		if err == nil {
			l.rev, l.lastOK = rev, now
			return l, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, msg.ClassifyAPI(fmt.Errorf("ledger: acquire lock %s: %w", name, err))
		}
		e, err := l.kv.Get(ctx, l.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return nil, msg.ClassifyAPI(fmt.Errorf("ledger: acquire lock %s: read holder: %w", name, err))
		}
		held := &HeldError{Name: name}
		_ = json.Unmarshal(e.Value(), &held.Holder) // a garbled holder still holds it
		return nil, held
	}
	return nil, failure.Retryable(fmt.Errorf("ledger: acquire lock %s: it keeps changing hands", name))
}

// Refresh extends the lock by its TTL from now, or fails with [ErrLockLost]
// if it expired or changed hands.
func (l *Lock) Refresh(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	info := l.info
	info.Refreshed = time.Now().UTC()
	data, err := json.Marshal(info)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: l.subject, Data: data, Header: nats.Header{}}
	ack, err := l.js.PublishMsg(ctx, m,
		jetstream.WithExpectLastSequencePerSubject(l.rev), jetstream.WithMsgTTL(l.ttl))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return fmt.Errorf("ledger: lock %s: %w", l.name, ErrLockLost)
		}
		return msg.ClassifyAPI(fmt.Errorf("ledger: refresh lock %s: %w", l.name, err))
	}
	l.rev, l.info, l.lastOK = ack.Sequence, info, time.Now()
	return nil
}

// Keep refreshes the lock every third of its TTL until ctx ends (then it
// returns nil) or the lock is lost (then an error wrapping [ErrLockLost]). A
// refresh that fails for another reason is retried at the next tick while
// the lock may still be valid. Run it in the goroutine group of the work the
// lock protects, so losing the lock stops that work.
func (l *Lock) Keep(ctx context.Context) error {
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		err := l.Refresh(ctx)
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrLockLost):
			return err
		default:
			l.mu.Lock()
			since := time.Since(l.lastOK)
			l.mu.Unlock()
			if since >= l.ttl {
				return fmt.Errorf("ledger: lock %s: no refresh for %s (%w): %w", l.name, since.Round(time.Second), ErrLockLost, err)
			}
		}
	}
}

// Release removes the lock if this holder still has it; otherwise it
// returns an error wrapping [ErrLockLost] and leaves the new holder alone.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.kv.Purge(ctx, l.key, jetstream.LastRevision(l.rev), jetstream.PurgeTTL(markerTTL))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("ledger: release lock %s: %w", l.name, ErrLockLost)
	}
	if err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: release lock %s: %w", l.name, err))
	}
	return nil
}

// Holder returns what this lock last wrote.
func (l *Lock) Holder() LockInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.info
}
