// Command cel-eval evaluates CEL expressions and ciel policies against GitLab
// webhook files offline, with the engine the ciel interceptor runs.
//
//	go install github.com/ciel-ci/ciel/cmd/cel-eval@latest
package main

import (
	celeval "github.com/ciel-ci/ciel/cmd/cel-eval/command"
	"github.com/ciel-ci/ciel/internal/exitcode"
)

func main() { exitcode.Main("cel-eval", celeval.NewCommand(), celeval.ExitError) }
