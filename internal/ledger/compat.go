package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
)

// bucketCompatible names the first setting of an existing bucket's stream
// that differs from the bucket qfetch creates in a way no update may put
// right: one pre-created by someone else (a hostile credential, before
// only the planner's could create buckets) with its own subjects, its own
// retention (a work queue deletes what is read) or memory storage (the
// watermark gone at a restart). The tunable settings (history, age,
// limits) the planner brings to qfetch's.
func bucketCompatible(have jetstream.StreamConfig, want jetstream.KeyValueConfig) error {
	subjects := []string{"$KV." + want.Bucket + ".>"}
	bad := func(setting string, h, w any) error {
		return failure.FleetWide(fmt.Errorf("%w: bucket %s exists with %s %v, qfetch needs %v; "+
			"qfetch did not create it: inspect it (nats stream info KV_%s) and remove it, and the next planner creates it",
			msg.ErrIncompatible, want.Bucket, setting, h, w, want.Bucket))
	}
	switch {
	case strings.Join(have.Subjects, ",") != strings.Join(subjects, ","):
		return bad("subjects", strings.Join(have.Subjects, ","), strings.Join(subjects, ","))
	case have.Retention != jetstream.LimitsPolicy:
		return bad("retention", have.Retention, jetstream.LimitsPolicy)
	case have.Storage != want.Storage:
		return bad("storage", have.Storage, want.Storage)
	}
	if setting, h, w, found := msg.ForeignSetting(have); found {
		return bad(setting, h, w)
	}
	return nil
}

// checkBucket reads bucket's stream and checks it compatible with want; it
// returns the stream's settings.
func checkBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, "KV_"+want.Bucket)
	if err != nil {
		return jetstream.StreamConfig{}, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", want.Bucket, err))
	}
	have := s.CachedInfo().Config
	return have, bucketCompatible(have, want)
}

// settled reports whether a bucket's stream already has every setting
// UpdateKeyValue would bring from want, as nats.go derives them: the
// planner then leaves it alone. An update also turns direct gets back on,
// and roll-ups on the buckets that deny them, until leaderReads and
// denyRollups turn them off again: each pass a moment in which a worker
// binding reads from any replica, and a roll-up header could empty the run
// records. Anything it does not recognise it updates, as before.
func settled(have jetstream.StreamConfig, want jetstream.KeyValueConfig) bool {
	orNone := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	dup := 2 * time.Minute
	if want.TTL > 0 && want.TTL < dup {
		dup = want.TTL
	}
	compression := jetstream.NoCompression
	if want.Compression {
		compression = jetstream.S2Compression
	}
	rollups := have.AllowRollup || !keepsRollups(want.Bucket)
	return rollups && have.Description == want.Description &&
		have.MaxMsgsPerSubject == int64(max(want.History, 1)) && have.MaxAge == want.TTL &&
		have.MaxBytes == orNone(want.MaxBytes) && have.MaxMsgSize == int32(orNone(int64(want.MaxValueSize))) &&
		have.Storage == want.Storage && have.Replicas == max(want.Replicas, 1) && have.Duplicates == dup &&
		have.Compression == compression && have.DenyDelete && have.Discard == jetstream.DiscardNew &&
		have.MaxMsgs == -1 && have.MaxConsumers == -1 && have.Placement == nil &&
		have.AllowMsgTTL == (want.LimitMarkerTTL != 0) && have.SubjectDeleteMarkerTTL == want.LimitMarkerTTL
}

// bindBucket binds to bucket as it is, creating nothing: what a process
// that does not own the buckets (a worker, the exporter) does. A missing
// bucket is a retryable error wrapping msg.ErrNotSetUp: it waits for the
// planner to create it.
func bindBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, failure.Retryable(fmt.Errorf("ledger: bucket %s: %w: waiting for a planner to create it (%w)", want.Bucket, msg.ErrNotSetUp, err))
	}
	if err != nil {
		return nil, msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", want.Bucket, err))
	}
	if _, err := checkBucket(ctx, js, want); err != nil {
		return nil, err
	}
	return newRebinding(js, kv), nil
}
