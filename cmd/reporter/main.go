// Command reporter reports Tekton PipelineRuns to GitLab as commit
// statuses. See pkg/commands/reporter.
package main

import (
	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/reporter"
)

func main() { exitcode.Main("reporter", reporter.NewCommand(), exitcode.Failure) }
