// Command reporter reports Tekton PipelineRuns to GitLab as commit
// statuses. See cmd/reporter/command.
package main

import (
	reporter "github.com/ciel-ci/ciel/cmd/reporter/command"
	"github.com/ciel-ci/ciel/internal/exitcode"
)

func main() { exitcode.Main("reporter", reporter.NewCommand(), exitcode.Failure) }
