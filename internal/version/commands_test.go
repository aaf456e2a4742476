package version_test

import (
	"bytes"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ciel-ci/ciel/internal/version"
	"github.com/ciel-ci/ciel/pkg/commands/celeval"
	"github.com/ciel-ci/ciel/pkg/commands/ciel"
	"github.com/ciel-ci/ciel/pkg/commands/interceptor"
	"github.com/ciel-ci/ciel/pkg/commands/reporter"
)

// TestEveryCommandSaysItsVersion: --version on each binary's root command
// prints "<name> version <version.String()>" and runs nothing else.
func TestEveryCommandSaysItsVersion(t *testing.T) {
	for name, cmd := range map[string]*cobra.Command{
		"cel-eval": celeval.NewCommand(), "ciel": ciel.NewCommand(), "interceptor": interceptor.NewCommand(), "reporter": reporter.NewCommand(),
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetErr(&out)
			cmd.SetArgs([]string{"--version"})
			if err := cmd.Execute(); err != nil {
				t.Fatalf("%s --version: %v\n%s", name, err, out.String())
			}
			if got, want := out.String(), name+" version "+version.String()+"\n"; got != want {
				t.Errorf("%s --version printed %q, want %q", name, got, want)
			}
		})
	}
}
