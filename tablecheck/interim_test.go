package tablecheck

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/qfetch/qfetch/internal/ledger"
	"github.com/qfetch/qfetch/internal/objstore"
	"github.com/qfetch/qfetch/internal/tables"
)

// convertRun converts a sealed run from its manifest.json the way a
// rebuild does, with the converter alone: until the fleet's table loop is
// wired here.
func convertRun(bucket string) func(ctx context.Context, rec ledger.RunRecord) error {
	return func(ctx context.Context, rec ledger.RunRecord) error {
		path := func(key string) string { return filepath.Join(bucket, filepath.FromSlash(key)) }
		b, err := os.ReadFile(path(objstore.ManifestKey(Prefix, rec.ID)))
		if err != nil {
			return err
		}
		var m struct {
			Created, Completed, After, Before time.Time
			HostList                          []struct{ Key string }
			Batches                           []struct {
				Batch   string
				Objects []struct{ Key string }
			}
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		src := tables.Source{Run: rec.ID, RunDate: rec.Created}
		write := func(key string, body []byte) error {
			if err := os.MkdirAll(filepath.Dir(path(key)), 0o755); err != nil {
				return err
			}
			return os.WriteFile(path(key), body, 0o644)
		}
		row := tables.RunRow{Run: rec.ID, RunDate: rec.Created, After: rec.After, Before: rec.Before,
			Completed: m.Completed, Batches: len(m.Batches), HostListPages: len(m.HostList)}
		for _, batch := range m.Batches {
			var buf bytes.Buffer
			w := tables.NewDetectionWriter(&buf, src, tables.Options{})
			part := ""
			for _, o := range batch.Objects {
				if part == "" {
					part = strings.TrimSuffix(filepath.Base(o.Key), ".xml")
				}
				f, err := os.Open(path(o.Key))
				if err != nil {
					return err
				}
				err = w.Add(ctx, o.Key, f)
				f.Close()
				if err != nil {
					return err
				}
			}
			st, err := w.Close()
			if err != nil {
				return err
			}
			if part == "" {
				continue
			}
			row.DetectionRows += st.Rows
			if err := write(tables.PartKey(Prefix, tables.Detections, rec.ID, rec.Created, part), buf.Bytes()); err != nil {
				return err
			}
		}
		for _, o := range m.HostList {
			var buf bytes.Buffer
			w := tables.NewHostWriter(&buf, src, tables.Options{})
			f, err := os.Open(path(o.Key))
			if err != nil {
				return err
			}
			err = w.Add(ctx, o.Key, f)
			f.Close()
			if err != nil {
				return err
			}
			st, err := w.Close()
			if err != nil {
				return err
			}
			row.HostRows += st.Rows
			part := strings.TrimSuffix(filepath.Base(o.Key), ".xml")
			if err := write(tables.PartKey(Prefix, tables.Hosts, rec.ID, rec.Created, part), buf.Bytes()); err != nil {
				return err
			}
		}
		if err := write(tables.ManifestKey(Prefix, rec.ID), []byte("{}")); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := tables.WriteRun(&buf, row); err != nil {
			return err
		}
		return write(tables.PartKey(Prefix, tables.Runs, rec.ID, rec.Created, "run"), buf.Bytes())
	}
}
