package version_test

import (
	"bytes"
	"testing"

	"github.com/spf13/cobra"

	celeval "github.com/ciel-ci/ciel/cmd/cel-eval/command"
	ciel "github.com/ciel-ci/ciel/cmd/ciel/command"
	interceptor "github.com/ciel-ci/ciel/cmd/interceptor/command"
	reporter "github.com/ciel-ci/ciel/cmd/reporter/command"
	"github.com/ciel-ci/ciel/internal/version"
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
