// Command cel-eval evaluates CEL expressions and ciel policies against GitLab
// webhook files offline, with the engine the ciel interceptor runs.
//
//	go install github.com/ciel-ci/ciel/cmd/cel-eval@latest
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/ciel-ci/ciel/pkg/commands/celeval"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := celeval.NewCommand().ExecuteContext(ctx)
	stop()
	if err != nil && !celeval.Silent(err) {
		fmt.Fprintln(os.Stderr, "cel-eval:", err)
	}
	os.Exit(celeval.ExitCode(err))
}
