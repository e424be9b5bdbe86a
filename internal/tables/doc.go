// Package tables turns the stored Qualys XML into Parquet tables analysts
// query from the bucket (detections, hosts, kb, runs), per batch and rebuildable.
//
// The XML stays the record: tables are derived from it, never hold up a
// run's fetch, and can be rebuilt from it at any time (I9). The layout is
// Hive-style, <prefix>/tables/<table>/run_date=<day>/run=<run>/part-<n>.parquet,
// so read_parquet('…/tables/detections/**/*.parquet', hive_partitioning=true)
// reads a table as written.
package tables
