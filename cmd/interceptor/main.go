// Command interceptor serves the ciel GitLab ClusterInterceptor for Tekton
// Triggers. See pkg/commands/interceptor.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/interceptor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := interceptor.NewCommand().ExecuteContext(ctx)
	stop()
	os.Exit(exitcode.Report(os.Stderr, "interceptor", err, exitcode.Failure))
}
