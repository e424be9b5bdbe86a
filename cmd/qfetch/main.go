// Command qfetch is the operator's tool: one binary, one subcommand per job
// (runs, status, dead letters, the watermark, the preflight check, the
// simulator and a whole run in one process).
package main

import (
	"context"
	"os"

	"github.com/qfetch/qfetch/internal/interrupt"
)

func main() {
	ctx, stop := interrupt.Context(context.Background())
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
