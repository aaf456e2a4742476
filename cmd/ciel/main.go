// Command ciel merges per-architecture images into multi-arch indexes and
// promotes tested indexes to release tags. See cmd/ciel/command.
package main

import (
	ciel "github.com/ciel-ci/ciel/cmd/ciel/command"
	"github.com/ciel-ci/ciel/internal/exitcode"
)

func main() { exitcode.Main("ciel", ciel.NewCommand(), ciel.ExitFailed) }
