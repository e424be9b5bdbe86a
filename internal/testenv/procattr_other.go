//go:build !linux

package testenv

// processAlive cannot tell on this system, so it says yes: nothing is swept.
func processAlive(int) bool { return true }
