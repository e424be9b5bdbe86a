package msg

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// review17c: a QFETCH_DLQ pre-created with qfetch's own settings plus a
// RePublish (or a subject transform) is accepted by the planner's Setup:
// streamCompatible checks neither (the buckets' check refuses RePublish),
// and streamTunablesEqual does not compare them, so no update takes them
// back. Republished into the state bucket, every dead-letter record a
// worker's credential publishes on qfetch.dlq.> becomes the watermark (I1).
func TestSetupRefusesARePublishingDeadLetterStream_review17c(t *testing.T) {
	js := testenv.Connect(t, testenv.NATSURL(t))
	ctx := t.Context()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "QFETCH_STATE", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	hostile := wanted(Config{}.withDefaults()).dlq
	hostile.RePublish = &jetstream.RePublish{Source: dlqSubjectPrefix + "wm", Destination: "$KV.QFETCH_STATE.watermark"}
	if _, err := js.CreateStream(ctx, hostile); err != nil {
		t.Fatalf("pre-creating the hostile dead-letter stream: %v", err)
	}
	_, err := Setup(ctx, js, Config{AdoptConsumer: true}) // a planner's
	if errors.Is(err, ErrIncompatible) {
		return
	}
	// Accepted: show what it does.
	forged := `{"time":"2099-01-01T00:00:00Z","run":"forged","by":"worker","reason":"run complete"}`
	if _, perr := js.Publish(ctx, dlqSubjectPrefix+"wm", []byte(forged)); perr != nil {
		t.Fatal(perr)
	}
	kv, kerr := js.KeyValue(ctx, "QFETCH_STATE")
	if kerr != nil {
		t.Fatal(kerr)
	}
	got := "(none)"
	if e, gerr := kv.Get(ctx, "watermark"); gerr == nil {
		got = string(e.Value())
	}
	s, _ := js.Stream(ctx, StreamDLQ)
	t.Fatalf("Setup accepted a dead-letter stream that republishes to the watermark (setup: %v; republish kept: %v); "+
		"a record published on %swm made the watermark %s", err, s.CachedInfo().Config.RePublish != nil, dlqSubjectPrefix, got)
}

// Either stream pre-created with a RePublish or a subject transform is
// refused, by the planner and by the processes that only bind to it.
func TestStreamCompatibleRefusesRedirection_review17c(t *testing.T) {
	w := wanted(Config{}.withDefaults())
	for _, want := range []jetstream.StreamConfig{w.batches, w.dlq} {
		rp := want
		rp.RePublish = &jetstream.RePublish{Source: ">", Destination: "elsewhere.>"}
		st := want
		st.SubjectTransform = &jetstream.SubjectTransformConfig{Source: ">", Destination: "elsewhere.>"}
		for name, have := range map[string]jetstream.StreamConfig{"republish": rp, "subject transform": st} {
			if err := streamCompatible(have, want); !errors.Is(err, ErrIncompatible) {
				t.Errorf("%s with a %s: %v, want %v", want.Name, name, err, ErrIncompatible)
			}
		}
		if err := streamCompatible(want, want); err != nil {
			t.Errorf("%s as qfetch creates it: %v", want.Name, err)
		}
	}
}
