//go:build race

package e2e

// raceEnabled: the binaries under test are built with -race too, so that a
// data race in a real multi-process run fails the test.
const raceEnabled = true
