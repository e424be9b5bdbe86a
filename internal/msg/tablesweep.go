package msg

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
)

// RepublishTableJob publishes a conversion again after its first publish
// was lost (the planner's sweep of sealed runs whose tables never
// completed), under Msg-Id <run>.<kind>.<item>.<attempt>: the stream
// remembers the first Msg-Id for its duplicate window (6h) even after a
// purge, and would drop a publish under it as a duplicate. One attempt
// name per sweep keeps a sweep's own publishes deduplicated.
func (q *TableQueue) RepublishTableJob(ctx context.Context, run, kind, item, attempt string) error {
	j := TableJob{Run: run, Kind: kind, Item: item}
	data, err := EncodeTableJob(j)
	if err != nil {
		return err
	}
	if !ValidRunID(attempt) {
		return failure.Permanent(fmt.Errorf("msg: republish table job %s: attempt %q is not 1-64 letters, digits, '-' or '_'", j.MsgID(), attempt))
	}
	id := j.MsgID() + "." + attempt
	m := &nats.Msg{Subject: j.Subject(), Data: data}
	if _, err := q.js.PublishMsg(ctx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamTables)); err != nil {
		return ClassifyAPI(fmt.Errorf("msg: republish table job %s: %w", id, err))
	}
	return nil
}
