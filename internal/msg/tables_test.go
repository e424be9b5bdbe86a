package msg

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/testenv"
)

func TestDecodeTableJob(t *testing.T) {
	long := strings.Repeat("1", 10)
	for _, tc := range []struct {
		name, body string
		want       TableJob // zero: an error
	}{
		{"detections", `{"v":1,"run":"r1","kind":"detections","item":"17"}`, TableJob{V: 1, Run: "r1", Kind: "detections", Item: "17"}},
		{"split half", `{"v":1,"run":"r1","kind":"detections","item":"17.2.1"}`, TableJob{V: 1, Run: "r1", Kind: "detections", Item: "17.2.1"}},
		{"page", `{"v":1,"run":"r1","kind":"hosts","item":"3"}`, TableJob{V: 1, Run: "r1", Kind: "hosts", Item: "3"}},
		{"kb", `{"v":1,"run":"kb-20261204T120000Z-a1b2c3","kind":"kb","item":"3.1"}`, TableJob{V: 1, Run: "kb-20261204T120000Z-a1b2c3", Kind: "kb", Item: "3.1"}},
		{"kb on a detection run", `{"v":1,"run":"r1","kind":"kb","item":"3"}`, TableJob{}},
		{"detections on a kb pass", `{"v":1,"run":"kb-1","kind":"detections","item":"3"}`, TableJob{}},
		{"hosts on a kb pass", `{"v":1,"run":"kb-1","kind":"hosts","item":"3"}`, TableJob{}},
		{"kb page item", `{"v":1,"run":"kb-1","kind":"kb","item":"0"}`, TableJob{}},
		{"not JSON", `garbled`, TableJob{}},
		{"no version", `{"run":"r1","kind":"hosts","item":"3"}`, TableJob{}},
		{"newer version", `{"v":2,"run":"r1","kind":"hosts","item":"3"}`, TableJob{}},
		{"unknown field", `{"v":1,"run":"r1","kind":"hosts","item":"3","key":"x"}`, TableJob{}},
		{"trailing", `{"v":1,"run":"r1","kind":"hosts","item":"3"} {}`, TableJob{}},
		{"run a wildcard", `{"v":1,"run":">","kind":"hosts","item":"3"}`, TableJob{}},
		{"run with a dot", `{"v":1,"run":"a.b","kind":"hosts","item":"3"}`, TableJob{}},
		{"kind runs", `{"v":1,"run":"r1","kind":"runs","item":"1"}`, TableJob{}},
		{"batch zero", `{"v":1,"run":"r1","kind":"detections","item":"0"}`, TableJob{}},
		{"leading zero", `{"v":1,"run":"r1","kind":"detections","item":"017"}`, TableJob{}},
		{"bad split", `{"v":1,"run":"r1","kind":"detections","item":"17.3"}`, TableJob{}},
		{"page with a part", `{"v":1,"run":"r1","kind":"hosts","item":"3.1"}`, TableJob{}},
		{"page path", `{"v":1,"run":"r1","kind":"hosts","item":"../3"}`, TableJob{}},
		{"page too long", `{"v":1,"run":"r1","kind":"hosts","item":"` + long + `"}`, TableJob{}},
		{"oversized", `{"v":1,"run":"r1","kind":"hosts","item":"3","x":"` + strings.Repeat("a", 2000) + `"}`, TableJob{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeTableJob([]byte(tc.body))
			if tc.want == (TableJob{}) {
				if err == nil || !errors.Is(err, ErrBadTableJob) || failure.ClassOf(err) != failure.ClassPermanent {
					t.Fatalf("got %+v, %v; want a permanent ErrBadTableJob", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
			if data, err := EncodeTableJob(got); err != nil || string(data) != tc.body {
				t.Fatalf("encoded %s, %v; want %s", data, err, tc.body)
			}
		})
	}
}

func TestTableJobNames(t *testing.T) {
	j := TableJob{Run: "r1", Kind: TableDetections, Item: "17.2"}
	if j.Subject() != "qfetch.table.r1" || j.MsgID() != "r1.detections.17.2" {
		t.Fatalf("subject %q, Msg-Id %q", j.Subject(), j.MsgID())
	}
}

func TestTableRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		n        uint64
		min, max time.Duration
	}{
		{0, 4 * time.Second, 6 * time.Second},
		{1, 4 * time.Second, 6 * time.Second},
		{2, 8 * time.Second, 12 * time.Second},
		{7, 4 * time.Minute, 6 * time.Minute},
		{1000, 4 * time.Minute, 6 * time.Minute},
	} {
		if d := TableRetryDelay(tc.n); d < tc.min || d > tc.max {
			t.Errorf("TableRetryDelay(%d) = %s, want in [%s, %s]", tc.n, d, tc.min, tc.max)
		}
	}
}

// The tables stream dedupes a job published twice, and a delivery refuses
// a job published on another run's subject.
func TestTablesQueue(t *testing.T) {
	e := newEnv(t)
	q, err := SetupTables(e.Ctx, e.JS, TablesConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetupTables(e.Ctx, e.JS, TablesConfig{}); err != nil {
		t.Fatalf("second setup: %v", err)
	}
	for range 2 {
		if err := q.PublishTableJob(e.Ctx, "r1", TableDetections, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.PublishTableJob(e.Ctx, "r1", TableHosts, "01"); err == nil {
		t.Fatal("published a bad job")
	}
	if n, err := q.TablesPending(e.Ctx, "r1"); err != nil || n != 1 {
		t.Fatalf("pending %d, %v; want 1 (deduplicated)", n, err)
	}
	if _, err := e.JS.Publish(e.Ctx, "qfetch.table.r2", []byte(`{"v":1,"run":"r1","kind":"hosts","item":"1"}`)); err != nil {
		t.Fatal(err)
	}
	d, err := q.NextTableJob(e.Ctx, time.Second)
	if err != nil || d == nil {
		t.Fatalf("next: %v, %v", d, err)
	}
	if j, err := d.Job(); err != nil || j.Item != "1" || j.Kind != TableDetections || d.Deliveries() != 1 {
		t.Fatalf("job %+v, %v", j, err)
	}
	if err := d.Ack(e.Ctx); err != nil {
		t.Fatal(err)
	}
	d, err = q.NextTableJob(e.Ctx, time.Second)
	if err != nil || d == nil {
		t.Fatalf("next: %v, %v", d, err)
	}
	if _, err := d.Job(); err == nil || failure.ClassOf(err) != failure.ClassPermanent {
		t.Fatalf("a job for r1 on r2's subject: %v", err)
	}
	if err := d.Term("test"); err != nil {
		t.Fatal(err)
	}
	// Term is not confirmed by the server: wait for it to take effect.
	testenv.Eventually(t, 5*time.Second, func() bool {
		n, err := q.TablesPending(e.Ctx, "")
		return err == nil && n == 0
	}, "the terminated job is still in the stream")
	if d, err := q.NextTableJob(e.Ctx, 200*time.Millisecond); err != nil || d != nil {
		t.Fatalf("next on an empty queue: %v, %v", d, err)
	}
}
