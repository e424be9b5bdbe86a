package testenv_test

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/testenv"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func createAndPublish(t *testing.T, js jetstream.JetStream, payload []byte) {
	t.Helper()
	ctx := testCtx(t)
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "TESTENV",
		Subjects: []string{"testenv.>"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "testenv.a", payload); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func lastPayload(t *testing.T, js jetstream.JetStream) []byte {
	t.Helper()
	ctx := testCtx(t)
	s, err := js.Stream(ctx, "TESTENV")
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "testenv.a")
	if err != nil {
		t.Fatalf("get last message: %v", err)
	}
	return m.Data
}

func TestNATSJetStream(t *testing.T) {
	srv := testenv.NATS(t)
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream is off")
	}
	js := testenv.Connect(t, srv.ClientURL())
	createAndPublish(t, js, []byte("hello"))
	if got := lastPayload(t, js); !bytes.Equal(got, []byte("hello")) {
		t.Fatalf("got %q, want %q", got, "hello")
	}
}

func TestNATSURLServesJetStream(t *testing.T) {
	url := testenv.NATSURL(t)
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("URL %q is not on 127.0.0.1", url)
	}
	js := testenv.Connect(t, url)
	if _, err := js.AccountInfo(testCtx(t)); err != nil {
		t.Fatalf("account info: %v", err)
	}
}

func TestNATSRestartKeepsStream(t *testing.T) {
	n := testenv.StartNATS(t)
	url := n.URL()
	createAndPublish(t, testenv.Connect(t, url), []byte("kept"))

	n.Stop()
	if n.Server() != nil {
		t.Fatal("Server() is not nil after Stop")
	}
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("connected to a stopped server")
	}

	n.Start()
	if n.URL() != url {
		t.Fatalf("URL changed over a restart: %s, then %s", url, n.URL())
	}
	js := testenv.Connect(t, url)
	if got := lastPayload(t, js); string(got) != "kept" {
		t.Fatalf("after restart got %q, want %q", got, "kept")
	}

	n.Restart()
	if got := lastPayload(t, testenv.Connect(t, url)); string(got) != "kept" {
		t.Fatalf("after second restart got %q, want %q", got, "kept")
	}
}

func TestNATSBinaryIsPinnedVersion(t *testing.T) {
	bin := testenv.NATSBinary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), "v2.15.2") {
		t.Fatalf("%s --version = %q, want v2.15.2", bin, out)
	}
}
