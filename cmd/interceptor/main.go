// Command interceptor serves the ciel GitLab ClusterInterceptor for Tekton
// Triggers. See cmd/interceptor/command.
package main

import (
	interceptor "github.com/ciel-ci/ciel/cmd/interceptor/command"
	"github.com/ciel-ci/ciel/internal/exitcode"
)

func main() { exitcode.Main("interceptor", interceptor.NewCommand(), exitcode.Failure) }
