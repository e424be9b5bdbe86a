package msg

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/qparams"
)

// TestDecodeForgedParams: a message whose Params a planner's configuration
// could not hold is refused as permanent, naming the parameter; Encode
// refuses the same batch.
func TestDecodeForgedParams(t *testing.T) {
	tests := []struct {
		name   string
		params url.Values
		want   string // "" accepts; else a part of the error
	}{
		{"defaults overridden", url.Values{"status": {"New"}, "show_igs": {"1"}}, ""},
		{"purge", url.Values{"Action": {"purge"}}, "parameter Action is set by qfetch"},
		{"ids in upper case", url.Values{"IDS": {"1-999999999"}}, "parameter IDS is set by qfetch"},
		{"window widened", url.Values{"vm_processed_AFTER": {"2000-01-01"}}, "parameter vm_processed_AFTER is set by qfetch"},
		{"unknown name", url.Values{"delete_hosts": {"1"}}, "parameter delete_hosts is not a Host List Detection parameter qfetch allows"},
		{"host list only", url.Values{"show_ars": {"1"}}, "parameter show_ars is not a Host List Detection parameter"},
		{"long name, value not echoed", url.Values{strings.Repeat("n", 3000): {"secret-ish"}}, "(3000 bytes) is not"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBatch("r1", 3)
			b.Params = tt.params
			b.V = SchemaVersion
			data, err := json.Marshal(b) // as a forger would: Encode refuses it
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(data)
			_, eerr := Encode(b)
			if tt.want == "" {
				if err != nil || eerr != nil {
					t.Fatalf("refused: %v / %v", err, eerr)
				}
				if got.Params.Encode() != tt.params.Encode() {
					t.Fatalf("params %v, want %v", got.Params, tt.params)
				}
				return
			}
			for _, err := range []error{err, eerr} {
				if !errors.Is(err, ErrBadBatch) || !errors.Is(err, qparams.ErrNotAllowed) ||
					failure.ClassOf(err) != failure.ClassPermanent || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v\nwant a permanent ErrBadBatch containing %q", err, tt.want)
				}
				if strings.Contains(err.Error(), "secret-ish") || len(err.Error()) > 300 {
					t.Fatalf("error echoes a value or is unbounded: %d bytes", len(err.Error()))
				}
			}
		})
	}
}

// maxBatch is the largest batch the configuration allows: 10000 hosts
// (QFETCH_BATCH_SIZE's limit) of 20-digit IDs no range can shorten.
func maxBatch() Batch {
	ids := make([]string, 10000)
	for i := range ids {
		ids[i] = strconv.FormatUint(10_000_000_000_000_000_000+2*uint64(i), 10)
	}
	b := testBatch("r1", 1)
	b.IDs, b.Hosts = strings.Join(ids, ","), len(ids)
	return b
}

func TestBatchBound(t *testing.T) {
	data, err := Encode(maxBatch())
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > MaxBatchBytes {
		t.Fatalf("the largest configurable batch takes %d bytes, over MaxBatchBytes %d", len(data), MaxBatchBytes)
	}
	big := append([]byte(`{"v":1,"x":"`), bytes.Repeat([]byte("a"), MaxBatchBytes)...)
	big = append(big, `"}`...)
	if _, err := Decode(big); !errors.Is(err, ErrBadBatch) || failure.ClassOf(err) != failure.ClassPermanent ||
		!strings.Contains(err.Error(), "a batch takes at most") {
		t.Fatalf("oversized message: %v", err)
	}
}

// TestPublishBound: the publisher refuses a batch over MaxBatchBytes even
// when the stream would take it (its MaxMsgSize is 1 MiB).
func TestPublishBound(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	// No batch holds more than MaxBatchHosts: the largest one and long
	// detection parameters (~310 KB) are what can exceed the bound.
	b := maxBatch()
	b.Params = url.Values{"status": {strings.Repeat("New,", 25<<10)}}
	err := e.q.Publisher(PublisherOptions{}).Publish(e.Ctx, b)
	if failure.ClassOf(err) != failure.ClassPermanent || !strings.Contains(err.Error(), "lower the batch size") ||
		!strings.Contains(err.Error(), strconv.Itoa(MaxBatchBytes)) {
		t.Fatalf("want a permanent size error naming the bound, got %v", err)
	}
}

// TestDeadLetterAnyAcceptedMessage: every message the batch stream accepts
// (up to its 1 MiB MaxMsgSize) can be dead-lettered: a body too large to be
// a batch leaves a bounded record with its size and hash; a batch, even the
// largest, is kept whole and stays replayable.
func TestDeadLetterAnyAcceptedMessage(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	forged := testBatch("r1", 9)
	forged.Params = url.Values{"Action": {"purge"}}
	forged.V = SchemaVersion
	forgedData, _ := json.Marshal(forged)
	largest, err := Encode(maxBatch())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		body      []byte
		truncated bool
		replay    bool
	}{
		{"garbage 800KiB", bytes.Repeat([]byte{0xff}, 800<<10), true, false},
		{"json 300KiB of '<'", []byte(`{"v":1,"run":"r1","x":"` + strings.Repeat("<", 300<<10) + `"}`), true, false},
		{"json 1MiB-300 bytes", []byte(`{"v":1,"x":"` + strings.Repeat("a", (1<<20)-300) + `"}`), true, false},
		{"json 200KiB of control characters", []byte(`{"v":1,"x":"` + strings.Repeat(`\u0001`, 200<<10/6) + `"}`), false, false},
		{"forged params", forgedData, false, false},
		{"largest batch", largest, false, true},
	}
	for _, tt := range tests {
		if _, err := e.JS.Publish(e.Ctx, BatchSubject("r1"), tt.body); err != nil {
			t.Fatalf("%s: the stream refuses it: %v", tt.name, err)
		}
		msgs, err := fetchAll(e.Ctx, e.q, 1, 2*time.Second)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("%s: fetch: %d, %v", tt.name, len(msgs), err)
		}
		_, derr := Decode(msgs[0].Data())
		if tt.replay != (derr == nil) {
			t.Fatalf("%s: Decode: %v", tt.name, derr)
		}
		if err := e.q.DeadLetter(e.Ctx, msgs[0], "test", failure.Permanent(errors.New(strings.Repeat("e", 100<<10)))); err != nil {
			t.Fatalf("%s: DeadLetter: %v", tt.name, err)
		}
	}
	dls, err := e.q.DeadLetters(e.Ctx, "r1")
	if err != nil || len(dls) != len(tests) {
		t.Fatalf("dead letters: %d, %v", len(dls), err)
	}
	for i, tt := range tests {
		dl := dls[i]
		sum := sha256.Sum256(tt.body)
		if dl.Size != len(tt.body) || dl.SHA256 != hex.EncodeToString(sum[:]) || dl.Truncated != tt.truncated {
			t.Errorf("%s: size %d sha256 %s truncated %v; want %d %x %v", tt.name, dl.Size, dl.SHA256, dl.Truncated,
				len(tt.body), sum, tt.truncated)
		}
		if len(dl.LastError) > maxLastError+len("…") {
			t.Errorf("%s: last error of %d bytes kept", tt.name, len(dl.LastError))
		}
		switch {
		case tt.truncated && (len(dl.Body) != keptHead || !bytes.HasPrefix(tt.body, dl.Body) || len(dl.Batch) != 0):
			t.Errorf("%s: kept %d body bytes, %d batch bytes; want the first %d", tt.name, len(dl.Body), len(dl.Batch), keptHead)
		case !tt.truncated && !bytes.Equal(dl.Batch, tt.body) && !bytes.Equal(dl.Body, tt.body):
			t.Errorf("%s: the message is not kept whole", tt.name)
		}
	}
	if _, err := e.q.Replay(e.Ctx, dls[len(dls)-1].Seq, noHook); err != nil {
		t.Fatalf("the largest batch is not replayable from its dead letter: %v", err)
	}
	if _, err := e.q.Replay(e.Ctx, dls[0].Seq, noHook); !errors.Is(err, ErrNotReplayable) ||
		!strings.Contains(err.Error(), strconv.Itoa(800<<10)+" bytes") {
		t.Fatalf("replaying a truncated record: %v", err)
	}
}
