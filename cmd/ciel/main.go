// Command ciel merges per-architecture images into multi-arch indexes and
// promotes tested indexes to release tags. See pkg/commands/ciel.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ciel-ci/ciel/pkg/commands/ciel"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := ciel.NewCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ciel:", err)
	}
	os.Exit(ciel.ExitCode(err))
}
