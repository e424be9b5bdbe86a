package serverproc

import (
	"strings"
	"testing"
)

func TestRedactingLog(t *testing.T) {
	const secret = "S3CRETS3CRET"
	l := newRedactingLog(secret, nil)
	// The secret arrives split across writes, as a pipe may deliver it.
	for _, w := range []string{"root pass: S3CR", "ETS3CRET ok\npartial S3C", "RETS3CRET"} {
		if _, err := l.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	got := l.String()
	if strings.Contains(got, secret) {
		t.Fatalf("log holds the secret: %q", got)
	}
	if want := "root pass: [REDACTED] ok\npartial [REDACTED]"; got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}

	big := strings.Repeat("line of output\n", 2*logTail/len("line of output\n"))
	if _, err := l.Write([]byte(big)); err != nil {
		t.Fatal(err)
	}
	if n := len(l.String()); n > logTail+len("partial [REDACTED]") {
		t.Fatalf("log holds %d bytes, want at most about %d", n, logTail)
	}
}
