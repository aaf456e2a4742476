// Command e2e-sandbox is the end-to-end pod runner's helper: it runs one
// step program in a private mount namespace and chroot (see package
// sandbox). It is started by the runner, never by hand.
package main

import (
	"os"

	"github.com/ciel-ci/ciel/test/e2e/podrunner/sandbox"
)

func main() { sandbox.Main(os.Args[1:]) }
