// Command qfetch is the operator's tool: one binary, one subcommand per job
// (runs, status, dead letters, the watermark, the preflight check, the
// simulator and a whole run in one process).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
