package tables

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/qfetch/qfetch/internal/qualysim"
)

// Simulator paths and a batch's form, as the worker asks.
const (
	simDetectionPath = "/api/2.0/fo/asset/host/vm/detection/"
	simHostListPath  = "/api/2.0/fo/asset/host/"
)

func simIDs(s *qualysim.Sim, first, n int64) string {
	var b strings.Builder
	for i := first; i < first+n; i++ {
		if i > first {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(s.HostID(i), 10))
	}
	return b.String()
}

func simRequest(s *qualysim.Sim, path, form string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "http://sim"+path, strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Requested-With", "tables-test")
	req.SetBasicAuth(s.Username(), s.Password())
	return req
}

// simDetections is the simulator's detection answer for n hosts from the
// first, with RESULTS, QDS and reopened info.
func simDetections(tb testing.TB, s *qualysim.Sim, first, n int64) []byte {
	tb.Helper()
	form := "action=list&show_reopened_info=1&show_qds=1&show_qds_factors=1&truncation_limit=0&status=New,Active,Re-Opened,Fixed&ids=" + simIDs(s, first, n)
	return simServe(tb, s, simDetectionPath, form)
}

func simServe(tb testing.TB, s *qualysim.Sim, path, form string) []byte {
	tb.Helper()
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, simRequest(s, path, form))
	if rec.Code != http.StatusOK {
		tb.Fatalf("simulator: status %d: %.300s", rec.Code, rec.Body.Bytes())
	}
	return rec.Body.Bytes()
}

func newSim(hosts int64) *qualysim.Sim {
	return qualysim.New(qualysim.Config{Seed: 1, Hosts: hosts, ConcurrencyLimit: qualysim.Off, RateLimit: qualysim.Off})
}

// convertDetections converts the objects into one file.
func convertDetections(tb testing.TB, opt Options, objects ...[]byte) ([]byte, Stats) {
	tb.Helper()
	var buf bytes.Buffer
	w := NewDetectionWriter(&buf, Source{Run: "run-1"}, opt)
	for i, o := range objects {
		if err := w.Add(context.Background(), fmt.Sprintf("runs/run-1/detections/batch-%06d.xml", i+1), bytes.NewReader(o)); err != nil {
			tb.Fatal(err)
		}
	}
	st, err := w.Close()
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), st
}

func convertHosts(tb testing.TB, opt Options, objects ...[]byte) ([]byte, Stats) {
	tb.Helper()
	var buf bytes.Buffer
	w := NewHostWriter(&buf, Source{Run: "run-1"}, opt)
	for i, o := range objects {
		if err := w.Add(context.Background(), fmt.Sprintf("runs/run-1/hostlist/page-%06d.xml", i+1), bytes.NewReader(o)); err != nil {
			tb.Fatal(err)
		}
	}
	st, err := w.Close()
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), st
}

func convertKB(tb testing.TB, opt Options, objects ...[]byte) ([]byte, Stats) {
	tb.Helper()
	var buf bytes.Buffer
	w := NewKBWriter(&buf, Source{Run: "kb-1"}, opt)
	for i, o := range objects {
		if err := w.Add(context.Background(), fmt.Sprintf("kb/kb-1/vulns/batch-%06d.xml", i+1), bytes.NewReader(o)); err != nil {
			tb.Fatal(err)
		}
	}
	st, err := w.Close()
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), st
}

func readSample(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "samples", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// readRows reads a file back with parquet-go's reader.
func readRows[T any](tb testing.TB, file []byte) []T {
	tb.Helper()
	rows, err := parquet.Read[T](bytes.NewReader(file), int64(len(file)))
	if err != nil {
		tb.Fatal(err)
	}
	return rows
}

// dump renders every value of every row, NULLs included, one line per
// value: column path, then value. It is what the golden files hold.
func dump(tb testing.TB, file []byte) string {
	tb.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		tb.Fatal(err)
	}
	leaves := f.Schema().Columns()
	isTime := make([]bool, len(leaves))
	for i, path := range leaves {
		leaf, _ := f.Schema().Lookup(path...)
		lt := leaf.Node.Type().LogicalType()
		isTime[i] = lt != nil && strings.HasPrefix(lt.String(), "TIMESTAMP")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s %v\n", f.Metadata().CreatedBy, f.Metadata().KeyValueMetadata)
	row := 0
	for _, rg := range f.RowGroups() {
		rr := rg.Rows()
		buf := make([]parquet.Row, 16)
		for {
			n, err := rr.ReadRows(buf)
			for _, r := range buf[:n] {
				fmt.Fprintf(&b, "-- row %d\n", row)
				row++
				for _, v := range r {
					val := "NULL"
					switch {
					case v.IsNull():
					case isTime[v.Column()]:
						val = time.UnixMilli(v.Int64()).UTC().Format(time.RFC3339)
					default:
						val = strconv.Quote(v.String())
					}
					fmt.Fprintf(&b, "%s = %s\n", strings.Join(leaves[v.Column()], "."), val)
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				tb.Fatal(err)
			}
		}
		rr.Close()
	}
	return b.String()
}

// qualysimFilterAll is the truth filter of simDetections over a whole
// small subscription.
func qualysimFilterAll() qualysim.Filter {
	st, err := qualysim.ParseStatuses("New,Active,Re-Opened,Fixed")
	if err != nil {
		panic(err)
	}
	return qualysim.Filter{Statuses: st}
}
