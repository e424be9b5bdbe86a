package finish

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/objstore"
)

// What latest.json may hold that no finisher wrote: each is either left
// (it names a later run) or replaced by the run finishing, never an error
// that would hold up the run's completion for ever. A run whose window
// ends far in the future (a clock gone wrong, a forged object) is
// replaced: kept, it would hold latest.json until that day.
func TestReview19UpdateLatestHostileContent(t *testing.T) {
	future := latestOf(time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC))
	futureJSON, _ := jsonOf(future)
	olderJSON, _ := jsonOf(older)
	newerJSON, _ := jsonOf(newer)
	cases := []struct {
		name    string
		content []byte
		want    Latest // what latest.json names after older's finisher
	}{
		{"empty", nil, older},
		{"null", []byte("null"), older},
		{"an array", []byte("[1,2]"), older},
		{"a string", []byte(`"x"`), older},
		{"not UTF-8", []byte{0xff, 0xfe, '{'}, older},
		{"over 1 MiB of junk", bytes.Repeat([]byte("x"), 3<<20), older},
		{"a Latest, then 3 MiB of spaces", append(append([]byte{}, newerJSON...), bytes.Repeat([]byte(" "), 3<<20)...), newer},
		{"a Latest, then junk", append(append([]byte{}, futureJSON...), "junk"...), older},
		{"the same run, other fields", []byte(`{"run":"` + older.Run + `","before":"2000-01-01T00:00:00Z"}`), Latest{Run: older.Run}},
		{"a later run", newerJSON, newer},
		{"a run that ends far in the future", futureJSON, older},
		{"this very Latest", olderJSON, older},
	}
	for _, st := range latestStores {
		for _, tc := range cases {
			t.Run(st.name+"/"+tc.name, func(t *testing.T) {
				store := st.open(t)
				key := objstore.LatestKey(latestPrefix)
				if _, err := store.Put(t.Context(), key, bytes.NewReader(tc.content), objstore.PutOptions{}); err != nil {
					t.Fatal(err)
				}
				if err := latestFinisher(store).updateLatest(t.Context(), key, older); err != nil {
					t.Fatalf("updateLatest: %v", err)
				}
				got, ok := readLatest(t, store, key)
				if !ok || got.Run != tc.want.Run {
					t.Errorf("latest.json names %q (present %t), want %q", got.Run, ok, tc.want.Run)
				}
			})
		}
	}
}

func jsonOf(l Latest) ([]byte, error) { return json.Marshal(l) }

// wrappingStore hands out Get's reader wrapped, as a caller's decorator
// (metrics, tracing) would: its ETag is lost.
type wrappingStore struct{ Store }

func (s wrappingStore) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{rc, rc}, nil
}

// A store whose Get reader lost its ETag fails updateLatest with an error
// that says so, and writes nothing: latest.json is never replaced blind.
func TestReview19UpdateLatestWrappedReader(t *testing.T) {
	for _, st := range latestStores {
		t.Run(st.name, func(t *testing.T) {
			inner := st.open(t)
			key := objstore.LatestKey(latestPrefix)
			if err := latestFinisher(inner).updateLatest(t.Context(), key, older); err != nil {
				t.Fatal(err)
			}
			err := latestFinisher(wrappingStore{inner}).updateLatest(t.Context(), key, newer)
			if err == nil || !strings.Contains(err.Error(), "ETag") {
				t.Fatalf("updateLatest through a wrapped reader = %v, want an error naming the missing ETag", err)
			}
			if got, _ := readLatest(t, inner, key); got.Run != older.Run {
				t.Errorf("latest.json names %s, want %s untouched", got.Run, older.Run)
			}
		})
	}
}
