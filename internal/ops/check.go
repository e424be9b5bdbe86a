package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/logging"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/qualys"
	"github.com/qfetch/qfetch/internal/runstat"
)

// Level is a check's verdict, in lower case in JSON.
type Level string

// Levels: a warning needs attention but does not stop qfetch; a check is
// skipped when one it depends on failed.
const (
	OK      Level = "ok"
	Warn    Level = "warn"
	Fail    Level = "fail"
	Skipped Level = "skipped"
)

// CheckResult is one line of `qfetch check`.
type CheckResult struct {
	Name   string `json:"name"`
	Level  Level  `json:"level"`
	Detail string `json:"detail"`
}

// ProbeStore is the bucket as the check uses it.
type ProbeStore interface {
	Check(ctx context.Context) error
	Put(ctx context.Context, key string, r io.Reader, opts objstore.PutOptions) (objstore.Object, error)
	Delete(ctx context.Context, key string) error
	Describe() string
}

// Detections is the Qualys API as the check uses it.
type Detections interface {
	Check(ctx context.Context) (qualys.Limits, error)
	Detections(ctx context.Context, form url.Values, onID func(uint64)) (*qualys.Response, error)
}

// CheckConfig is what a new installation is checked against.
type CheckConfig struct {
	NATSURL   string
	NATSCreds string
	// Queue is the JetStream configuration the workers would set up
	// (MaxInFlight is QFETCH_MAX_IN_FLIGHT).
	Queue  msg.Config
	Store  ProbeStore
	Prefix string
	API    Detections
	// Timeout bounds each check; default 30s.
	Timeout time.Duration
}

// ErrCheckFailed is returned when at least one check failed.
var ErrCheckFailed = errors.New("preflight check failed")

// Check runs every preflight check, prints one line per check, and returns
// the results; the error wraps ErrCheckFailed when any failed.
func Check(ctx context.Context, cfg CheckConfig, out Output) ([]CheckResult, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	var results []CheckResult
	add := func(name string, l Level, f string, a ...any) {
		r := CheckResult{Name: name, Level: l, Detail: logging.Scrub(fmt.Sprintf(f, a...))}
		results = append(results, r)
		if !out.JSON {
			fmt.Fprintf(out.W, "%-7s  %-22s %s\n", strings.ToUpper(string(r.Level)), r.Name, r.Detail)
		}
	}
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, cfg.Timeout) }

	checkNATS(step, cfg, add)
	checkStore(step, cfg, add)
	checkQualys(step, cfg, add)

	if out.JSON {
		if err := out.json(results); err != nil {
			return results, err
		}
	}
	failed := 0
	for _, r := range results {
		if r.Level == Fail {
			failed++
		}
	}
	if failed > 0 {
		return results, fmt.Errorf("%d of %d checks: %w", failed, len(results), ErrCheckFailed)
	}
	return results, nil
}

type adder func(name string, l Level, f string, a ...any)

func checkNATS(step func() (context.Context, context.CancelFunc), cfg CheckConfig, add adder) {
	opts := []nats.Option{nats.Name("qfetch-check"), nats.Timeout(cfg.Timeout), nats.MaxReconnects(0)}
	if cfg.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCreds))
	}
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		add("nats", Fail, "cannot connect to %s: %v", redactURLs(cfg.NATSURL), err)
		add("jetstream", Skipped, "no NATS connection")
		return
	}
	defer nc.Close()
	add("nats", OK, "connected to %s (server %s)", nc.ConnectedUrlRedacted(), nc.ConnectedServerVersion())
	js, err := jetstream.New(nc)
	if err != nil {
		add("jetstream", Fail, "%v", err)
		return
	}
	ctx, cancel := step()
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
			add("jetstream", Fail, "JetStream is not enabled for this account: enable it on the server (jetstream {} in its config)")
		} else {
			add("jetstream", Fail, "cannot read the account: %v", err)
		}
		return
	}
	add("jetstream", OK, "enabled; account uses %d streams, %s of file storage", info.Streams, runstat.Bytes(int64(info.Store)))
	findings, err := msg.Inspect(ctx, js, cfg.Queue)
	if err != nil {
		add("jetstream objects", Fail, "cannot inspect: %v", err)
		return
	}
	buckets, err := ledger.Inspect(ctx, js, ledger.Config{Replicas: cfg.Queue.StreamReplicas})
	if err != nil {
		add("jetstream objects", Fail, "cannot inspect: %v", err)
		return
	}
	// Streams, then buckets, then the consumer: the order operators know.
	findings = slices.Insert(findings, len(findings)-1, buckets...)
	for _, f := range findings {
		switch {
		case f.Problem == "":
			add(f.Object, OK, "as expected")
		case f.Fatal:
			add(f.Object, Fail, "%s", f.Problem)
		default:
			add(f.Object, Warn, "%s", f.Problem)
		}
	}
}

func checkStore(step func() (context.Context, context.CancelFunc), cfg CheckConfig, add adder) {
	if cfg.Store == nil {
		add("bucket", Fail, "not configured (QFETCH_S3_*)")
		return
	}
	where := cfg.Store.Describe()
	ctx, cancel := step()
	defer cancel()
	if err := cfg.Store.Check(ctx); err != nil {
		add("bucket", Fail, "%s: %v", where, err)
		add("bucket writable", Skipped, "the bucket check failed")
		return
	}
	add("bucket", OK, "%s exists and these credentials can read it", where)
	key := probeKey(cfg.Prefix)
	if _, err := cfg.Store.Put(ctx, key, strings.NewReader("qfetch check probe; safe to delete\n"), objstore.PutOptions{ContentType: "text/plain"}); err != nil {
		add("bucket writable", Fail, "writing the probe object %s: %v", key, err)
		return
	}
	if err := cfg.Store.Delete(ctx, key); err != nil {
		add("bucket writable", Fail, "wrote the probe object %s but cannot delete it (delete it by hand): %v", key, err)
		return
	}
	add("bucket writable", OK, "wrote and deleted %s", key)
}

func checkQualys(step func() (context.Context, context.CancelFunc), cfg CheckConfig, add adder) {
	if cfg.API == nil {
		add("qualys login", Fail, "not configured (QFETCH_QUALYS_*)")
		return
	}
	ctx, cancel := step()
	defer cancel()
	if _, err := cfg.API.Check(ctx); err != nil {
		add("qualys login", Fail, "%v", err)
		add("qualys limits", Skipped, "the login failed")
		return
	}
	add("qualys login", OK, "the credentials log in (/msp/about.php)")

	// Limits are per API: only a detection call shows the ones the
	// workers share. One call for one host ID costs one call of the
	// hourly rate limit.
	form := qualys.DetectionQuery{IDs: []uint64{1}}.Form()
	resp, err := cfg.API.Detections(ctx, form, nil)
	if failure.ClassOf(err) == failure.ClassBackPressure {
		// A fleet at the cap is working, not broken (I6).
		add("qualys limits", Warn, "not read: Qualys asked to wait (its concurrency or rate limit is in use, e.g. by running workers): %v", err)
		return
	}
	if err != nil {
		add("qualys limits", Fail, "a one-host detection call failed: %v", err)
		return
	}
	_, err = io.Copy(io.Discard, resp)
	resp.Close()
	if err != nil {
		add("qualys limits", Fail, "a one-host detection call failed: %v", err)
		return
	}
	l := resp.Limits
	if l.ConcurrencyLimit < 0 {
		add("qualys limits", Warn, "the answer carried no concurrency limit header; make sure QFETCH_MAX_IN_FLIGHT (%d) is within the subscription's limit", cfg.Queue.MaxInFlight)
		return
	}
	rate := "no rate limit header"
	if l.RateLimit >= 0 {
		rate = fmt.Sprintf("rate %d calls per %ds, %d left", l.RateLimit, l.RateWindowSec, l.RateRemaining)
	}
	inFlight := cfg.Queue.MaxInFlight
	if inFlight == 0 {
		inFlight = msg.DefaultMaxInFlight
	}
	if inFlight > l.ConcurrencyLimit {
		add("qualys limits", Warn, "QFETCH_MAX_IN_FLIGHT is %d but Qualys allows %d concurrent detection calls (%s): workers will meet 409s; set it to %d or less",
			inFlight, l.ConcurrencyLimit, rate, l.ConcurrencyLimit)
		return
	}
	add("qualys limits", OK, "concurrency limit %d, QFETCH_MAX_IN_FLIGHT %d; %s", l.ConcurrencyLimit, inFlight, rate)
}

// redactURLs hides passwords in a comma-separated URL list.
func redactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			parts[i] = u.Redacted()
		}
	}
	return strings.Join(parts, ",")
}
