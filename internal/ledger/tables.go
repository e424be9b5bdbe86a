package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qfetch/qfetch/internal/failure"
	"github.com/qfetch/qfetch/internal/msg"
	"github.com/qfetch/qfetch/internal/objstore"
)

// Keys of the analyst tables in QFETCH_RUNS:
//
//	<run>.table.<kind>.<item>   one TablePart per part written (kind
//	                            detections with a batch key, hosts with a
//	                            page number)
//
// A part is its own key, like a batch result, so that recording one
// contends with nobody and counting them is one server call.

// TablePart is a written part of an analyst table.
type TablePart struct {
	Run   string `json:"run"`
	Kind  string `json:"kind"` // msg.TableDetections or msg.TableHosts
	Item  string `json:"item"` // batch key or page number
	Key   string `json:"key"`  // the Parquet object
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

func tablePartKey(run, kind, item string) (string, error) {
	j := msg.TableJob{Run: run, Kind: kind, Item: item}
	if err := j.Validate(); err != nil {
		return "", err
	}
	return run + ".table." + kind + "." + item, nil
}

// RecordTablePart records p by compare-and-set create. A part converted
// again (a redelivered job, two workers on one job, a rebuild) has the
// same content, so finding the same record is no error; a record with
// other content (a converter of another version wrote the object) is
// replaced, since the object holds the last writer's bytes.
func (l *Ledger) RecordTablePart(ctx context.Context, p TablePart) error {
	key, err := tablePartKey(p.Run, p.Kind, p.Item)
	if err != nil {
		return err
	}
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		_, err := l.runs.Create(ctx, key, data)
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return msg.ClassifyAPI(fmt.Errorf("ledger: record table part %s: %w", key, err))
		}
		e, err := l.runs.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile: create again
		}
		if err != nil {
			return msg.ClassifyAPI(fmt.Errorf("ledger: read table part %s: %w", key, err))
		}
		if bytes.Equal(e.Value(), data) {
			return nil
		}
		if _, err := l.runs.Update(ctx, key, data, e.Revision()); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return msg.ClassifyAPI(fmt.Errorf("ledger: record table part %s: %w", key, err))
		}
		if attempt == maxCASAttempts {
			return failure.Retryable(fmt.Errorf("ledger: record table part %s: still contended after %d attempts", key, attempt))
		}
		if err := casPause(ctx, attempt); err != nil {
			return err
		}
	}
}

// CountTableParts is how many part records run has, asked of the server
// without reading them (see [Ledger.CountDone]).
func (l *Ledger) CountTableParts(ctx context.Context, run string) (int, error) {
	return l.countKeys(ctx, run, "table")
}

// TableParts returns every part record of run. A garbled record is an
// error naming its key.
func (l *Ledger) TableParts(ctx context.Context, run string) ([]TablePart, error) {
	if _, err := runKey(run); err != nil {
		return nil, err
	}
	var out []TablePart
	err := l.eachValue(ctx, run+".table.>", func(key string, v []byte) error {
		var p TablePart
		if err := json.Unmarshal(v, &p); err != nil {
			return failure.Permanent(fmt.Errorf("ledger: table part record %s is garbled: %w", key, err))
		}
		if want := run + ".table." + p.Kind + "." + p.Item; want != key || p.Run != run {
			return failure.Permanent(fmt.Errorf("ledger: table part record %s names %s", key, want))
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// DoneBatch returns batch's result in run, ok false when it has none.
func (l *Ledger) DoneBatch(ctx context.Context, run, batch string) (BatchResult, bool, error) {
	key, err := doneKey(run, batch)
	if err != nil {
		return BatchResult{}, false, err
	}
	e, err := l.runs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return BatchResult{}, false, nil
	}
	if err != nil {
		return BatchResult{}, false, msg.ClassifyAPI(fmt.Errorf("ledger: read %s: %w", key, err))
	}
	var r BatchResult
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return BatchResult{}, false, failure.Permanent(fmt.Errorf("ledger: batch result %s is garbled: %w", key, err))
	}
	if r.Run != run || r.Batch != batch {
		return BatchResult{}, false, failure.Permanent(fmt.Errorf("ledger: batch result %s names %s.%s", key, r.Run, r.Batch))
	}
	return r, true, nil
}

// Page returns Host List page n of run as recorded, ok false when it has
// no record.
func (l *Ledger) Page(ctx context.Context, run string, n int) (objstore.Object, bool, error) {
	key, err := pageKey(run, n)
	if err != nil {
		return objstore.Object{}, false, err
	}
	e, err := l.runs.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return objstore.Object{}, false, nil
	}
	if err != nil {
		return objstore.Object{}, false, msg.ClassifyAPI(fmt.Errorf("ledger: read %s: %w", key, err))
	}
	var o objstore.Object
	if err := json.Unmarshal(e.Value(), &o); err != nil {
		return objstore.Object{}, false, failure.Permanent(fmt.Errorf("ledger: page record %s is garbled: %w", key, err))
	}
	return o, true, nil
}

// PageNumber is the number of a Host List page key (page-000017.xml is
// 17), ok false for anything else.
func PageNumber(key string) (int, bool) {
	i := strings.LastIndex(key, "/page-")
	if i < 0 || !strings.HasSuffix(key, ".xml") {
		return 0, false
	}
	s := strings.TrimSuffix(key[i+len("/page-"):], ".xml")
	if s != "" && s[0] >= 'a' && s[0] <= 'z' { // objstore's wide-number letter
		s = s[1:]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}
