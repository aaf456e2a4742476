// Command cel-eval evaluates CEL expressions and ciel policies against GitLab
// webhook files offline, with the engine the ciel interceptor runs.
//
//	go install github.com/ciel-ci/ciel/cmd/cel-eval@latest
package main

import (
	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/celeval"
)

func main() { exitcode.Main("cel-eval", celeval.NewCommand(), celeval.ExitError) }
