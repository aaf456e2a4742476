// Command cel-eval evaluates CEL expressions and ciel policies against GitLab
// webhook files offline, with the engine the ciel interceptor runs.
//
//	go install github.com/ciel-ci/ciel/cmd/cel-eval@latest
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/celeval"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := celeval.NewCommand().ExecuteContext(ctx)
	stop()
	os.Exit(exitcode.Report(os.Stderr, "cel-eval", err, celeval.ExitError))
}
