package testenv_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

// TestNATSCluster: an R3 stream written through one node is read through
// another; with two nodes down JetStream refuses; both back, the stream
// and its message are there, on the same URLs.
func TestNATSCluster(t *testing.T) {
	c := testenv.StartNATSCluster(t)
	_, js := testenv.ConnectCluster(t, c.URLs())
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	c.SetUp("an R3 stream", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"},
			Storage: jetstream.FileStorage, Replicas: 3})
		return err
	})
	if _, err := js.Publish(ctx, "r3.a", []byte("kept")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	other := testenv.Connect(t, c.URL(2))
	testenv.EventuallyOK(t, 10*time.Second, func() error {
		_, err := readR3(ctx, other)
		return err
	}, "the message read through n3")

	c.Shutdown(0)
	c.Shutdown(1)
	if c.Running(0) || c.Running(1) || !c.Running(2) {
		t.Fatal("Running does not follow Shutdown")
	}
	// The survivor may lead the meta group and the stream a moment
	// longer, until each group finds its quorum gone; the two find it
	// apart (CI saw the stream answer after the meta group had none).
	testenv.Eventually(t, time.Minute, func() bool { return c.MetaLeader() < 0 }, "no meta leader with one node of three")
	testenv.Eventually(t, time.Minute, func() bool { return c.StreamLeader("R3") < 0 }, "no R3 leader with one node of three")
	down, cancelDown := context.WithTimeout(ctx, 3*time.Second)
	defer cancelDown()
	if _, err := readR3(down, other); err == nil {
		t.Fatal("a read with two nodes of three down succeeded")
	}
	c.Start(0)
	c.Start(1)
	c.WaitReady(time.Minute)
	// WaitReady promises a leader for every stream: the first read after
	// it is answered.
	if c.StreamLeader("R3") < 0 {
		t.Fatal("no R3 leader after WaitReady")
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	got, err := readR3(rctx, js)
	if err != nil || !bytes.Equal(got, []byte("kept")) {
		t.Fatalf("after restart: %q, %v", got, err)
	}
}

func readR3(ctx context.Context, js jetstream.JetStream) ([]byte, error) {
	s, err := js.Stream(ctx, "R3")
	if err != nil {
		return nil, err
	}
	m, err := s.GetLastMsgForSubject(ctx, "r3.a")
	if err != nil {
		return nil, err
	}
	return m.Data, nil
}
