// Command ciel merges per-architecture images into multi-arch indexes and
// promotes tested indexes to release tags. See pkg/commands/ciel.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/ciel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := ciel.NewCommand().ExecuteContext(ctx)
	stop()
	os.Exit(exitcode.Report(os.Stderr, "ciel", err, ciel.ExitFailed))
}
