// Command reporter reports Tekton PipelineRuns to GitLab as commit
// statuses. See pkg/commands/reporter.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/reporter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := reporter.NewCommand().ExecuteContext(ctx)
	stop()
	os.Exit(exitcode.Report(os.Stderr, "reporter", err, exitcode.Failure))
}
