package ledger

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// checkBucket reads bucket's stream and checks it compatible with want.
func checkBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) error {
	s, err := js.Stream(ctx, "KV_"+want.Bucket)
	if err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", want.Bucket, err))
	}
	return bucketCompatible(s.CachedInfo().Config, want)
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
	if err := checkBucket(ctx, js, want); err != nil {
		return nil, err
	}
	return newRebinding(js, kv), nil
}
