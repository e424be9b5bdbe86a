package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
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

// checkBucket reads bucket's stream and checks it compatible with want.
func checkBucket(ctx context.Context, js jetstream.JetStream, want jetstream.KeyValueConfig) error {
	s, err := js.Stream(ctx, "KV_"+want.Bucket)
	if err != nil {
		return msg.ClassifyAPI(fmt.Errorf("ledger: bucket %s: %w", want.Bucket, err))
	}
	return bucketCompatible(s.CachedInfo().Config, want)
}

// settled reports whether a bucket's stream already is the one qfetch
// wants (bucketStream): the planner then leaves it alone, rather than
// updating five streams each pass (on a cluster, a meta-group proposal
// each).
//
// The whole configuration is compared, not a list of settings: an update
// sends every setting qfetch does not set as zero, and so puts right an
// operator's change to any of them (no_ack on the run records leaves every
// write unanswered). Only the server's own metadata is set aside. A
// setting the server fills in that this does not foresee makes a bucket
// look unsettled: updated every pass, never left wrong.
func settled(have jetstream.StreamConfig, want jetstream.KeyValueConfig) bool {
	h := have
	h.Metadata = operatorMetadata(have.Metadata)
	return reflect.DeepEqual(h, bucketStream(want))
}

// operatorMetadata is m without the server's own keys (_nats.*, which the
// server sets on every create and update); nil when nothing is left.
func operatorMetadata(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if strings.HasPrefix(k, "_nats.") {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	return out
}

// bucketStream is the stream qfetch wants for cfg, created or updated in
// one request: what nats.go's CreateKeyValue and UpdateKeyValue send
// (jetstream.prepareKeyValueConfig, nats.go v1.4x–1.5x, for a bucket
// without mirror or sources, which bucketCompatible refuses anyway), with
// two changes:
//
//   - Direct gets off, so that every Get goes to the stream leader. With
//     direct gets any current replica answers, and on a cluster a follower
//     that has not caught up yet (for seconds after a node restarts)
//     answers with an older revision or none: a run record or the
//     watermark just written read back as missing, which the cluster e2e
//     met. The leader has every acknowledged write; watches are consumers,
//     served by the leader either way.
//   - Roll-ups off where qfetch never purges a key (run records, the
//     watermark; see keepsRollups): the server lets a "Nats-Rollup: all"
//     header on any key a role may write empty the whole bucket, which
//     NATS permissions cannot refuse (they see subjects, not headers).
//
// Neither is ever on for a moment: on a cluster, a second planner's create
// arriving while the first updated the stream it had just created (as
// nats.go's defaults made it do) left both requests unanswered.
func bucketStream(cfg jetstream.KeyValueConfig) jetstream.StreamConfig {
	orNone := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	dup := 2 * time.Minute
	if cfg.TTL > 0 && cfg.TTL < dup {
		dup = cfg.TTL
	}
	compression := jetstream.NoCompression
	if cfg.Compression {
		compression = jetstream.S2Compression
	}
	return jetstream.StreamConfig{
		Name:                   "KV_" + cfg.Bucket,
		Description:            cfg.Description,
		Subjects:               []string{"$KV." + cfg.Bucket + ".>"},
		MaxMsgsPerSubject:      int64(max(cfg.History, 1)),
		MaxBytes:               orNone(cfg.MaxBytes),
		MaxAge:                 cfg.TTL,
		MaxMsgSize:             int32(orNone(int64(cfg.MaxValueSize))),
		Storage:                cfg.Storage,
		Replicas:               max(cfg.Replicas, 1),
		Placement:              cfg.Placement,
		AllowRollup:            keepsRollups(cfg.Bucket),
		DenyDelete:             true,
		Duplicates:             dup,
		MaxMsgs:                -1,
		MaxConsumers:           -1,
		AllowDirect:            false,
		RePublish:              cfg.RePublish,
		Compression:            compression,
		Discard:                jetstream.DiscardNew,
		AllowMsgTTL:            cfg.LimitMarkerTTL != 0,
		SubjectDeleteMarkerTTL: cfg.LimitMarkerTTL,
		Metadata:               operatorMetadata(cfg.Metadata),
	}
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
