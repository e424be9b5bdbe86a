package tables

import (
	"strings"
	"time"
)

// Table names: the folder under <prefix>/tables/.
const (
	Detections = "detections"
	Hosts      = "hosts"
	Runs       = "runs"
)

// SchemaVersion is written into every file (column schema_version and the
// file's key/value metadata). Additive changes keep it; a breaking change
// bumps it and writes under a new table folder, so old partitions stay
// readable as they are.
const SchemaVersion = 1

// PartKey is <prefix>/tables/<table>/run_date=<YYYY-MM-DD>/run=<run>/part-<part>.parquet.
// runDate is the run's creation time (its day in UTC names the partition);
// part names the XML the file was built from ("batch-000017.2", "page-000001").
func PartKey(prefix, table, run string, runDate time.Time, part string) string {
	return join(prefix, "tables/"+table+"/run_date="+runDate.UTC().Format(time.DateOnly)+"/run="+run+"/part-"+part+".parquet")
}

// ManifestKey is <prefix>/tables/manifests/<run>.json: the run's table
// manifest, written after every part of the run is, and before its row in
// the runs table. A run's tables are complete when it is there.
func ManifestKey(prefix, run string) string {
	return join(prefix, "tables/manifests/"+run+".json")
}

func join(prefix, rest string) string {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return rest
	}
	return prefix + "/" + rest
}
