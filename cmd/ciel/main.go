// Command ciel merges per-architecture images into multi-arch indexes and
// promotes tested indexes to release tags. See pkg/commands/ciel.
package main

import (
	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/pkg/commands/ciel"
)

func main() { exitcode.Main("ciel", ciel.NewCommand(), ciel.ExitFailed) }
