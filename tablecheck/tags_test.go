package tablecheck

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qfetch/qfetch/internal/qualysim"
)

// tagsColumn renders the tags list as id=name|…, NULL for no list.
var tagsColumn = column{name: "tags",
	sql: "array_to_string([CAST(t.id AS VARCHAR) || '=' || t.name FOR t IN tags], '|')"}

func tagsValue(tags []qualysim.Tag) value {
	if tags == nil {
		return null
	}
	parts := make([]string, len(tags))
	for i, t := range tags {
		parts[i] = strconv.FormatUint(t.ID, 10) + "=" + t.Name
	}
	return value{strings.Join(parts, "|"), true}
}

func groupsValue(ids []uint64) value {
	if ids == nil {
		return null
	}
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatUint(id, 10)
	}
	return value{strings.Join(parts, ","), true}
}

// TestTagsAndAssetGroupsEqualTruth: runs planned with
// QFETCH_QUALYS_SHOW_TAGS=true and QFETCH_QUALYS_HOSTLIST_DETAILS=All ask
// both APIs for show_tags=1 and the Host List for details=All; DuckDB
// reads the hosts table's tags and asset_group_ids, and the detections
// table's tags, equal to the simulator's truth host by host.
func TestTagsAndAssetGroupsEqualTruth(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	e, err := StartEstate(ctx, EstateConfig{Dir: dir, Hosts: 160, Seed: 21, BatchSize: 50, PageSize: 70,
		Overlap: time.Hour, HostListDetails: "All", ShowTags: true,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, d := range []time.Duration{0, 3 * 24 * time.Hour} {
		if _, err := e.Next(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range e.Runs {
		if r.Params.Get("show_tags") != "1" {
			t.Fatalf("run %s asks detections with %v: no show_tags=1", r.ID, r.Params)
		}
	}
	db := openTables(t, filepath.Join(e.Bucket, Prefix))

	hostCols := append(append([]column{}, hostColumns...), tagsColumn,
		column{name: "asset_group_ids", sql: "array_to_string(asset_group_ids, ',')"})
	detCols := append(append([]column{}, hostColumns...), tagsColumn)
	tagged, grouped, untagged, detRows := 0, 0, 0, 0
	for _, r := range e.Runs {
		f := r.Filter()
		f.ShowReopened = true

		want := rowSet{}
		for h := range e.Sim.HostRows(f) {
			want[fmt.Sprint(h.ID)] = append(hostValues(&h), tagsValue(h.Tags), groupsValue(h.AssetGroupIDs))
			if h.Tags != nil {
				tagged++
			} else {
				untagged++
			}
			if len(h.AssetGroupIDs) > 1 {
				grouped++
			}
		}
		got := readRows(t, db, 1, "SELECT CAST(host_id AS VARCHAR), "+selectList(hostCols)+" FROM hosts WHERE run = ?", r.ID)
		compareRows(t, "hosts of "+r.ID, names(hostCols), got, want)

		wantDet := rowSet{}
		for id, hd := range e.Sim.DetectionRows(f) {
			for _, d := range hd.Detections {
				wantDet[fmt.Sprintf("%d/%d", id, d.UniqueVulnID)] = append(hostValues(&hd.Host), tagsValue(hd.Host.Tags))
			}
		}
		gotDet := readRows(t, db, 2, "SELECT CAST(host_id AS VARCHAR), CAST(unique_vuln_id AS VARCHAR), "+
			selectList(detCols)+" FROM detections WHERE run = ?", r.ID)
		compareRows(t, "detections of "+r.ID, names(detCols), gotDet, wantDet)
		detRows += len(wantDet)
	}
	if tagged == 0 || untagged == 0 || grouped == 0 || detRows == 0 {
		t.Fatalf("the truth is too thin to test: %d hosts with tags, %d without, %d in two asset groups, %d detections",
			tagged, untagged, grouped, detRows)
	}
	t.Logf("%d runs: %d hosts with tags, %d without, %d detection rows compared", len(e.Runs), tagged, untagged, detRows)
}
