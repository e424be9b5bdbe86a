package objstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/qfetch/qfetch/internal/failure"
)

// S3 error codes by what they ask of the caller. minio-go has already retried
// the retryable ones by the time we see them (Options.MaxRetries times).
var (
	// retryableS3Codes may succeed on a later attempt.
	retryableS3Codes = set(
		"InternalError", "ServiceUnavailable", "SlowDown", "SlowDownRead", "SlowDownWrite",
		"RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded",
		"RequestThrottled", "OperationAborted", "XMinioServerNotInitialized",
		"XMinioReadQuorum", "XMinioWriteQuorum",
		// Bytes damaged in transit: the whole Put can be tried again.
		"BadDigest", "XAmzContentSHA256Mismatch", "IncompleteBody",
	)
	// fleetWideS3Codes fail every object alike until an operator acts:
	// bucket, credentials, permissions, region, clock, capacity.
	fleetWideS3Codes = set(
		"NoSuchBucket", "InvalidBucketName", "AccessDenied", "AllAccessDisabled", "AccountProblem",
		"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
		"InvalidToken", "TokenRefreshRequired", "InvalidSecurity", "MissingSecurityHeader",
		"AuthorizationHeaderMalformed", "PermanentRedirect", "RequestTimeTooSkewed",
		"XMinioStorageFull", "XMinioAdminBucketQuotaExceeded",
	)
	// unreachableErrnos: nothing answers at the endpoint. minio-go has
	// retried by the time we see one, so the store is down or the address
	// wrong, and every object would meet it: the fleet pauses (I6) and a
	// planner stops with exit 3, as for NATS unreachable.
	unreachableErrnos = []error{syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH}
	// retryableStatus: any 5xx, plus these.
	retryableStatus = map[int]bool{http.StatusRequestTimeout: true, http.StatusTooManyRequests: true, 499: true}
)

func set(codes ...string) map[string]bool {
	m := make(map[string]bool, len(codes))
	for _, c := range codes {
		m[c] = true
	}
	return m
}

// classify wraps err, from an S3 call doing op ("put", "stat" …) on key (""
// for the bucket), with its failure class and a message that names the bucket
// and endpoint. It returns ErrNotFound for a missing key and leaves an error
// of the caller's own context unclassified: the caller knows why it stopped.
// The request carried no condition: see classifyCond.
func (s *S3) classify(ctx context.Context, op, key string, err error) error {
	return s.classifyCond(ctx, op, key, err, nil)
}

// classifyCond is classify for a request that carried a condition: refused
// is what its refusal wraps, ErrExists for IfAbsent's If-None-Match: *,
// ErrChanged for an If-Match. With refused nil a refusal (412) is an answer
// we do not expect, since we sent no condition.
func (s *S3) classifyCond(ctx context.Context, op, key string, err, refused error) error {
	if err == nil {
		return nil
	}
	where := s.Describe()
	if key != "" {
		where = fmt.Sprintf("%q in %s", key, where)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("objstore: %s %s: %w", op, where, err)
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		switch {
		case refused != nil && (resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed),
			refused == ErrChanged && resp.Code == "NoSuchKey":
			// The condition does not hold: the key holds an object (If-None-Match),
			// or not the one named (If-Match: another, or none, which some
			// services answer with 404).
			return failure.Permanent(fmt.Errorf("objstore: %s %s: %w: %w", op, where, refused, err))
		case refused != nil && resp.Code == "ConditionalRequestConflict":
			// AWS (409): another conditional write of the key was in
			// flight, and whether ours holds is not known until it ends.
			// Only an If-Match caller, which reads the key again and
			// decides again, may take it for a refusal; an If-None-Match
			// caller would take ErrExists for an object there.
			if refused == ErrChanged {
				return failure.Retryable(fmt.Errorf("objstore: %s %s: %w: %w", op, where, ErrChanged, err))
			}
			return failure.Retryable(fmt.Errorf("objstore: %s %s: %w", op, where, err))
		case resp.Code == "NoSuchKey":
			return fmt.Errorf("objstore: %s %s: %w", op, where, ErrNotFound)
		case resp.Code == "NoSuchUpload":
			// Aborted under us: by whoever took the work over (the fence of
			// I8) or by a lifecycle rule. The work can be tried again, as a
			// new upload, if it is still ours.
			return failure.Retryable(fmt.Errorf("objstore: %s %s: %w: %w", op, where, ErrUploadGone, err))
		case resp.Code == "NoSuchBucket":
			return failure.FleetWide(fmt.Errorf("objstore: %s: bucket %q does not exist on %s: %w",
				op, s.bucket, s.endpoint, err))
		case fleetWideS3Codes[resp.Code] || resp.StatusCode == http.StatusForbidden:
			return failure.FleetWide(fmt.Errorf("objstore: %s: bucket %q on %s refused us (%s; check the credentials, "+
				"the bucket policy, the region and the clock): %w", op, s.bucket, s.endpoint, resp.Code, err))
		case retryableS3Codes[resp.Code] || resp.StatusCode >= 500 || retryableStatus[resp.StatusCode]:
			return failure.Retryable(fmt.Errorf("objstore: %s %s: %s: %w", op, where, resp.Code, err))
		default:
			// Every request we send is well-formed by construction, so an
			// answer we do not know means the store and our configuration
			// disagree. Every object would meet it, and no retry fixes it:
			// pause the fleet rather than dead-letter the batch (I6).
			return failure.FleetWide(fmt.Errorf("objstore: %s %s: unexpected answer %d %s: %w",
				op, where, resp.StatusCode, resp.Code, err))
		}
	}
	if tlsError(err) {
		return failure.FleetWide(fmt.Errorf("objstore: %s: TLS to %s for bucket %q failed (check QFETCH_S3_SECURE and the CA): %w",
			op, s.endpoint, s.bucket, err))
	}
	if unreachable(err) {
		return failure.FleetWide(fmt.Errorf("objstore: %s: cannot reach endpoint %s of bucket %q "+
			"(check QFETCH_S3_ENDPOINT and that the store is up): %w", op, s.endpoint, s.bucket, err))
	}
	// Reset, cut short, timed out: a connection that was made and then
	// failed. minio-go has retried already.
	return failure.Retryable(fmt.Errorf("objstore: %s %s: %w", op, where, err))
}

// unreachable reports an endpoint that cannot be connected to: its name
// does not resolve, or nothing answers at the address.
func unreachable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return true
	}
	for _, errno := range unreachableErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

func tlsError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	if errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &unknownCA) ||
		errors.As(err, &hostname) || errors.As(err, &invalid) {
		return true
	}
	// net/http turns a plain-HTTP answer to a TLS hello into this error,
	// which has no type of its own.
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "http: server gave HTTP response to HTTPS client" {
			return true
		}
	}
	return false
}
