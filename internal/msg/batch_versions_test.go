package msg

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/failure"
)

// released is what each testdata/batch-v<N>.json, a message as a released
// build wrote it, must decode to. A schema bump adds a file and a row here and
// keeps the old ones while that version's decoder stays.
var released = map[int]Batch{
	1: {
		V: 1, Run: "20250301T000000Z-ab12", Number: 17, Part: "2.1",
		After:  time.Date(2025, 2, 28, 0, 0, 0, 0, time.UTC),
		Before: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
		IDs:    "101,103-105,2000000000-2000000002", Hosts: 7,
		Params: map[string][]string{"status": {"New,Active,Re-Opened,Fixed"}, "qids": {"38170", "38173"}},
	},
	// Version 2 added Kind; only KnowledgeBase batches are written in it.
	// Its Params are empty here: which KnowledgeBase names qparams allows
	// is its own test's business.
	2: {
		V: 2, Kind: KindKB, Run: "kb-20250301T000000Z-ab12", Number: 3, Part: "1",
		After:  time.Date(2025, 2, 28, 23, 0, 0, 0, time.UTC),
		Before: time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC),
		IDs:    "38170,38173-38175,105000-105001", Hosts: 6,
	},
}

var versionFile = regexp.MustCompile(`^batch-v([0-9]+)\.json$`)

// readReleased returns the testdata messages by version.
func readReleased(t *testing.T) map[int][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "batch-v*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]byte{}
	for _, f := range files {
		m := versionFile.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			t.Fatalf("%s: name is not batch-v<N>.json", f)
		}
		v, _ := strconv.Atoi(m[1])
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[v] = data
	}
	return out
}

func TestDecodeReleasedVersions(t *testing.T) {
	files := readReleased(t)
	for v := range decoders {
		if files[v] == nil {
			t.Errorf("version %d is decoded but has no testdata/batch-v%d.json", v, v)
		}
	}
	for v := range released {
		if files[v] == nil {
			t.Errorf("version %d has an expected batch but no testdata/batch-v%d.json", v, v)
		}
	}
	if files[SchemaVersion] == nil {
		t.Errorf("the current version %d has no testdata/batch-v%d.json", SchemaVersion, SchemaVersion)
	}
	for v, data := range files {
		t.Run("v"+strconv.Itoa(v), func(t *testing.T) {
			want, ok := released[v]
			if !ok {
				t.Fatalf("testdata/batch-v%d.json has no expected batch in released", v)
			}
			got, err := Decode(data)
			if err != nil {
				// Dropping a decoder while its messages may still be queued
				// dead-letters them: remove the file and its row on purpose.
				t.Fatalf("a released version no longer decodes: %v", err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestCurrentVersionFileIsCurrent: what Encode writes today is the checked-in
// message of each version it writes (SchemaVersion for a KnowledgeBase
// batch, version 1 for a detection batch), so a change to the JSON without a
// bump fails here.
func TestCurrentVersionFileIsCurrent(t *testing.T) {
	for _, v := range []int{detectionVersion, SchemaVersion} {
		data := readReleased(t)[v]
		want, ok := released[v]
		if data == nil || !ok {
			t.Fatalf("no testdata or expected batch for the written version %d", v)
		}
		enc, err := Encode(want)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(enc, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("Encode writes\n%s\nbut testdata/batch-v%d.json holds\n%s\nbump SchemaVersion and add a decoder for the old form",
				enc, v, bytes.TrimSpace(data))
		}
	}
}

func TestDecodeRefusesNewerVersion(t *testing.T) {
	data := readReleased(t)[SchemaVersion]
	if data == nil {
		t.Fatalf("no testdata/batch-v%d.json", SchemaVersion)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	next := SchemaVersion + 1
	m["v"] = next
	newer, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(newer)
	if !errors.Is(err, ErrBadBatch) || failure.ClassOf(err) != failure.ClassPermanent {
		t.Fatalf("version %d: want a permanent ErrBadBatch, got class %v: %v", next, failure.ClassOf(err), err)
	}
	if want := "unknown schema version " + strconv.Itoa(next); !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name the version (%q)", err, want)
	}
}
