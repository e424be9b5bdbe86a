// Package failure classifies errors by what a caller should do about them:
// retry later, wait as told, stop the whole fleet, or give up on this item.
//
// Packages that meet a failure (the Qualys client, the object store, the queue)
// wrap it with one of the constructors; the worker decides with one switch on
// [ClassOf]. Classification travels through %w wrapping, so callers may add
// context freely.
package failure

import (
	"context"
	"errors"
	"time"
)

// Class says what a failure asks of the caller.
type Class uint8

const (
	// ClassUnknown is an error nobody classified. Callers treat it as retryable,
	// but it is kept apart so tests can catch unclassified paths.
	ClassUnknown Class = iota
	// ClassRetryable failures may succeed on a later attempt: 5xx, resets,
	// timeouts, a body cut short.
	ClassRetryable
	// ClassBackPressure means the remote asked us to slow down (Qualys 409). It is
	// not a failure of the item and never counts towards giving up on it.
	ClassBackPressure
	// ClassFleetWide failures no worker can fix by retrying the item: bad
	// credentials, API access disabled, a missing bucket. Every item would
	// fail the same way, so the caller pauses instead of burning the queue.
	ClassFleetWide
	// ClassPermanent failures will never succeed for this item: a bad parameter,
	// a garbled message.
	ClassPermanent
)

var classNames = [...]string{"unknown", "retryable", "back-pressure", "fleet-wide", "permanent"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "invalid"
}

// Error is a classified error. Wait, when set, is how long the remote asked us
// to wait before trying again.
type Error struct {
	Class Class
	Wait  time.Duration
	Err   error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Class.String()
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Retryable marks err as worth another attempt later.
func Retryable(err error) error { return wrap(ClassRetryable, 0, err) }

// BackPressure marks err as a request to wait at least wait before the next call.
func BackPressure(wait time.Duration, err error) error { return wrap(ClassBackPressure, wait, err) }

// FleetWide marks err as affecting every item, not just this one.
func FleetWide(err error) error { return wrap(ClassFleetWide, 0, err) }

// Permanent marks err as one no retry can fix for this item.
func Permanent(err error) error { return wrap(ClassPermanent, 0, err) }

func wrap(c Class, wait time.Duration, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Class: c, Wait: wait, Err: err}
}

// ClassOf returns the class of the outermost classified error in err's chain.
// A deadline that expired without a classification is Retryable: a slow
// remote is the usual cause. Cancellation is Unknown: the caller cancelled,
// and it knows why.
func ClassOf(err error) Class {
	if err == nil {
		return ClassUnknown
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return ClassRetryable
	}
	return ClassUnknown
}

// WaitOf returns how long the remote asked us to wait, or 0.
func WaitOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.Wait
	}
	return 0
}
