package msg

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

// clusterEnv is a queue at R3 on an embedded three-node cluster, its
// connection on n1 first (the node kept up), an R3 KV bucket, and
// delivered batch messages held unacked.
type clusterEnv struct {
	c    *testenv.NATSCluster
	nc   *nats.Conn
	js   jetstream.JetStream
	q    *Queue
	kv   jetstream.KeyValue
	held []jetstream.Msg
}

func newClusterEnv(t *testing.T, held int) *clusterEnv {
	t.Helper()
	c := testenv.StartNATSCluster(t)
	nc, js := testenv.ConnectCluster(t, c.URLs(), nats.DontRandomize())
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	// A loaded machine can time a request out while the new cluster
	// places its first R3 streams (CI met it); the set-up is idempotent,
	// and the planner's asks again too (app.Build).
	var q *Queue
	var kv jetstream.KeyValue
	testenv.EventuallyOK(t, 2*time.Minute, func() error {
		var err error
		if q, err = Setup(ctx, js, Config{StreamReplicas: 3, AckWait: time.Minute, MaxInFlight: 8}); err != nil {
			return fmt.Errorf("Setup: %w", err)
		}
		kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "QUORUM_TEST", Replicas: 3})
		return err
	}, "the queue and a bucket set up on a new cluster")
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	e := &clusterEnv{c: c, nc: nc, js: js, q: q, kv: kv}
	p := q.Publisher(PublisherOptions{})
	for n := 1; n <= held+1; n++ {
		if err := p.Publish(ctx, testBatch("20250301T000000Z-quorum", n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for range held {
		m, err := q.Next(ctx, 5*time.Second)
		if err != nil || m == nil {
			t.Fatalf("Next: %v, %v", m, err)
		}
		e.held = append(e.held, m)
	}
	return e
}

// ops are the JetStream requests a worker, the planner and the operator
// commands make, each as qfetch classifies its error.
func (e *clusterEnv) ops() []struct {
	name string
	do   func(ctx context.Context) error
} {
	kvErr := func(ctx context.Context, err error) error { return Confirm(ctx, e.js, ClassifyAPI(err)) }
	return []struct {
		name string
		do   func(ctx context.Context) error
	}{
		// A pull may also just come back empty (seen with nats.go 1.55 and
		// nats-server 2.15.2): the worker's watch (Queue.Available) finds
		// the quorum loss then.
		{"pull", func(ctx context.Context) error {
			m, err := e.q.Next(ctx, time.Second)
			if m != nil {
				return errors.New("a message pulled without quorum")
			}
			if err == nil {
				return unavailable(errors.New("pull came back empty"))
			}
			return err
		}},
		{"consumer info", func(ctx context.Context) error { _, _, err := e.q.InFlight(ctx); return err }},
		// Progress is not confirmed (a lease renewal must not wait on a
		// question): its no-responders answer is confirmed here.
		{"progress", func(ctx context.Context) error { return e.q.Confirm(ctx, e.q.Progress(ctx, e.held[0])) }},
		{"retry schedule", func(ctx context.Context) error { return e.q.Retry(ctx, e.held[1], time.Now()) }},
		{"ack", func(ctx context.Context) error { return kvErr(ctx, e.held[2].DoubleAck(ctx)) }},
		{"publish", func(ctx context.Context) error {
			p := e.q.Publisher(PublisherOptions{Attempts: 1, AttemptTimeout: time.Second})
			if err := p.Publish(ctx, testBatch("20250301T000000Z-quorum", 99)); err != nil {
				return err
			}
			return p.Wait(ctx)
		}},
		{"kv update", func(ctx context.Context) error {
			en, err := e.kv.Get(ctx, "k")
			if err != nil {
				return kvErr(ctx, err)
			}
			_, err = e.kv.Update(ctx, "k", []byte("w"), en.Revision())
			return kvErr(ctx, err)
		}},
		{"kv create", func(ctx context.Context) error {
			_, err := e.kv.Create(ctx, "new", []byte("w"))
			return kvErr(ctx, err)
		}},
		{"stream info", func(ctx context.Context) error { _, err := e.q.State(ctx); return kvErr(ctx, err) }},
		{"queue available", func(ctx context.Context) error { return e.q.Available(ctx) }},
		{"available", func(ctx context.Context) error { return Available(ctx, e.js) }},
	}
}

// TestQuorumLossClassified pins what nats.go and the server answer a
// cluster that lost its quorum, as qfetch reads it: every request a worker
// or planner makes fails fleet-wide, wrapping ErrJetStreamUnavailable —
// and KV reads still answer (direct gets from the surviving replica). A
// nats.go or server upgrade that changes an answer fails here.
func TestQuorumLossClassified(t *testing.T) {
	e := newClusterEnv(t, 3)
	e.c.Shutdown(1)
	e.c.Shutdown(2)
	if got := e.nc.ConnectedServerName(); got != "n1" {
		t.Fatalf("connected to %s, want n1 (the node kept up)", got)
	}
	// A leader on the surviving node keeps answering until it finds it
	// lost its quorum (a few seconds of raft's): until then nothing is
	// wrong to a client.
	testenv.Eventually(t, time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		_, _, err := e.q.InFlight(ctx)
		return errors.Is(err, ErrJetStreamUnavailable) && errors.Is(Available(ctx, e.js), ErrJetStreamUnavailable)
	}, "the consumer's and the meta group's leaders stepping down")
	for _, op := range e.ops() {
		t.Run(op.name, func(t *testing.T) {
			// The survivor's groups step down one by one, a loaded
			// machine stretching raft's timeouts: each answer is asked
			// again until it settles, and must settle on this.
			testenv.EventuallyOK(t, 30*time.Second, func() error {
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				defer cancel()
				err := op.do(ctx)
				if !errors.Is(err, ErrJetStreamUnavailable) || failure.ClassOf(err) != failure.ClassFleetWide {
					return fmt.Errorf("err = %v (class %v), want fleet-wide wrapping ErrJetStreamUnavailable", err, failure.ClassOf(err))
				}
				return nil
			}, "%s classified", op.name)
		})
	}
	t.Run("kv get", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		if _, err := e.kv.Get(ctx, "k"); err != nil {
			t.Fatalf("a KV read without quorum: %v (direct gets are served by any replica)", err)
		}
	})

	e.c.Start(1)
	e.c.Start(2)
	testenv.EventuallyOK(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		if _, _, err := e.q.InFlight(ctx); err != nil {
			return err
		}
		if err := e.q.Available(ctx); err != nil {
			return err
		}
		return Available(ctx, e.js)
	}, "JetStream answering again once the quorum is back")
}

// TestMissingIsNotUnavailable: with the cluster whole, a stream, bucket or
// consumer that is not there, and a publish no stream takes, are what they
// are — never read as a cluster without quorum.
func TestMissingIsNotUnavailable(t *testing.T) {
	e := newClusterEnv(t, 0)
	tests := []struct {
		name string
		do   func(ctx context.Context) error
	}{
		{"stream", func(ctx context.Context) error { _, err := e.js.Stream(ctx, "NOPE"); return err }},
		{"bucket", func(ctx context.Context) error { _, err := e.js.KeyValue(ctx, "NOPE"); return err }},
		{"consumer", func(ctx context.Context) error { _, err := e.js.Consumer(ctx, StreamBatches, "nope"); return err }},
		{"key", func(ctx context.Context) error { _, err := e.kv.Get(ctx, "nokey"); return err }},
		{"publish without a stream", func(ctx context.Context) error { _, err := e.js.Publish(ctx, "nostream.x", nil); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			raw := tt.do(ctx)
			if raw == nil {
				t.Fatal("no error")
			}
			err := Confirm(ctx, e.js, ClassifyAPI(raw))
			if errors.Is(err, ErrJetStreamUnavailable) || failure.ClassOf(err) == failure.ClassFleetWide {
				t.Fatalf("%v read as %v", raw, err)
			}
		})
	}
}

// TestConnectedNodeLost: the node the connection is on goes; the client
// moves to a survivor by itself, and the queue pulls on as before.
func TestConnectedNodeLost(t *testing.T) {
	e := newClusterEnv(t, 0)
	e.c.Shutdown(0)
	testenv.EventuallyOK(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		defer cancel()
		m, err := e.q.Next(ctx, time.Second)
		if err == nil && m == nil {
			return errors.New("no message")
		}
		if err == nil {
			return m.DoubleAck(ctx)
		}
		return err
	}, "a pull through a surviving node")
	if got := e.nc.ConnectedServerName(); got == "n1" || got == "" {
		t.Fatalf("connected to %q after n1 went", got)
	}
}
