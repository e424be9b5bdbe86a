// Package tablecheck reads qfetch's analyst tables back with DuckDB, a
// Parquet implementation other than the writer's, and checks them against
// the simulator's truth. It is a separate module because DuckDB needs cgo
// and the product binaries stay cgo-free.
package tablecheck
