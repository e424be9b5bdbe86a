//go:build !unix

package local

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// flock does not lock where flock(2) is missing: two processes on one data
// directory are then the user's to avoid (README, "Local runs").
func flock(*os.File) error { return nil }
