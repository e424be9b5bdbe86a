//go:build race

package qualysim

// RaceEnabled lets the million-host tests shrink under the race detector,
// which slows them tenfold; the full size runs in plain `go test`.
const RaceEnabled = true
