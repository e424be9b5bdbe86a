package ledger

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rebinding is a bucket whose binding is made again when a read finds no
// responder. nats.go fixes at bind time whether Gets are direct (any
// replica answers $JS.API.DIRECT.GET) or go to the stream leader, from the
// stream's AllowDirect then; and a planner's set-up turns AllowDirect off
// on a bucket an earlier version made with it on (an earlier version also
// turned it on and off again on every pass). A process bound before would
// send its Gets where nothing answers once it is off, every Get failing
// with no responders until it restarted
// (a worker that then gives every batch back, its status never refreshed:
// the e2e met it). Bound again, it reads as the stream says now. No
// responders also means a stream without a leader (an election, a lost
// quorum): binding again then fails too, and the read's error stands.
type rebinding struct {
	js     jetstream.JetStream
	bucket string
	mu     sync.Mutex
	kv     jetstream.KeyValue
}

func newRebinding(js jetstream.JetStream, kv jetstream.KeyValue) jetstream.KeyValue {
	return &rebinding{js: js, bucket: kv.Bucket(), kv: kv}
}

func (r *rebinding) cur() jetstream.KeyValue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kv
}

// again binds the bucket again after err, a read through was, and reports
// whether the read is worth a second try.
func (r *rebinding) again(ctx context.Context, was jetstream.KeyValue, err error) (jetstream.KeyValue, bool) {
	if !errors.Is(err, nats.ErrNoResponders) {
		return was, false
	}
	kv, berr := r.js.KeyValue(ctx, r.bucket)
	if berr != nil {
		return was, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv == was {
		r.kv = kv
	}
	return r.kv, true
}

// Get and GetRevision read; each is tried once more on a new binding.

func (r *rebinding) Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv := r.cur()
	e, err := kv.Get(ctx, key)
	if kv, ok := r.again(ctx, kv, err); ok {
		return kv.Get(ctx, key)
	}
	return e, err
}

func (r *rebinding) GetRevision(ctx context.Context, key string, revision uint64) (jetstream.KeyValueEntry, error) {
	kv := r.cur()
	e, err := kv.GetRevision(ctx, key, revision)
	if kv, ok := r.again(ctx, kv, err); ok {
		return kv.GetRevision(ctx, key, revision)
	}
	return e, err
}

// Create: nats.go's Create, refused on a key's delete marker, reads the
// key to see it deleted, and drops that read's error: through a binding
// whose Gets find no responder, a deleted key is told to exist (a claim or
// a lock would read as another's). A Get tells which, and binds again.
func (r *rebinding) Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error) {
	kv := r.cur()
	rev, err := kv.Create(ctx, key, value, opts...)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return rev, err
	}
	_, gerr := kv.Get(ctx, key)
	if kv, ok := r.again(ctx, kv, gerr); ok {
		return kv.Create(ctx, key, value, opts...)
	}
	return rev, err
}

// The rest never reads with a Get: they go to the current binding.

func (r *rebinding) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	return r.cur().Put(ctx, key, value)
}

func (r *rebinding) PutString(ctx context.Context, key string, value string) (uint64, error) {
	return r.cur().PutString(ctx, key, value)
}

func (r *rebinding) Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error) {
	return r.cur().Update(ctx, key, value, revision)
}

func (r *rebinding) Delete(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return r.cur().Delete(ctx, key, opts...)
}

func (r *rebinding) Purge(ctx context.Context, key string, opts ...jetstream.KVDeleteOpt) error {
	return r.cur().Purge(ctx, key, opts...)
}

func (r *rebinding) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return r.cur().Watch(ctx, keys, opts...)
}

func (r *rebinding) WatchAll(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return r.cur().WatchAll(ctx, opts...)
}

func (r *rebinding) WatchFiltered(ctx context.Context, keys []string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	return r.cur().WatchFiltered(ctx, keys, opts...)
}

func (r *rebinding) Keys(ctx context.Context, opts ...jetstream.WatchOpt) ([]string, error) {
	return r.cur().Keys(ctx, opts...)
}

func (r *rebinding) ListKeys(ctx context.Context, opts ...jetstream.WatchOpt) (jetstream.KeyLister, error) {
	return r.cur().ListKeys(ctx, opts...)
}

func (r *rebinding) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	return r.cur().ListKeysFiltered(ctx, filters...)
}

func (r *rebinding) History(ctx context.Context, key string, opts ...jetstream.WatchOpt) ([]jetstream.KeyValueEntry, error) {
	return r.cur().History(ctx, key, opts...)
}

func (r *rebinding) Bucket() string { return r.bucket }

func (r *rebinding) PurgeDeletes(ctx context.Context, opts ...jetstream.KVPurgeOpt) error {
	return r.cur().PurgeDeletes(ctx, opts...)
}

func (r *rebinding) Status(ctx context.Context) (jetstream.KeyValueStatus, error) {
	return r.cur().Status(ctx)
}
