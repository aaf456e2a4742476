// Command interceptor serves the ciel GitLab ClusterInterceptor for Tekton
// Triggers. See pkg/commands/interceptor.
package main

import (
	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/interceptor"
)

func main() { exitcode.Main("interceptor", interceptor.NewCommand(), exitcode.Failure) }
