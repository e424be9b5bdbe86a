package ledger

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// KeepBuckets (workers, the exporter) binds to existing buckets without
// changing them: only the planner's NATS user may update them.
func TestKeepBucketsChangesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	kv, err := e.JS.KeyValue(e.Ctx, BucketRuns)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
	cfg.Description = "changed by an operator"
	if _, err := e.JS.UpdateStream(e.Ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{KeepBuckets: true}); err != nil {
		t.Fatal(err)
	}
	s, err := e.JS.Stream(e.Ctx, "KV_"+BucketRuns)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Description; got != "changed by an operator" {
		t.Errorf("a keeping Setup changed the bucket: description %q", got)
	}
	if _, err := Setup(e.Ctx, e.JS, Config{}); err != nil {
		t.Fatal(err)
	}
	s, _ = e.JS.Stream(e.Ctx, "KV_"+BucketRuns)
	if got := s.CachedInfo().Config.Description; got == "changed by an operator" {
		t.Error("an owning Setup left the bucket as it was")
	}
}
