// Package command holds the cobra commands of the `ciel` binary:
//
//	ciel index create    merge per-architecture images into one multi-arch index
//	ciel index inspect   print the platforms, digests, media types and sizes of an index
//	ciel release promote tag a tested index with a release version (strict SemVer)
//
// Exit codes: 0 success; 1 the operation was refused or failed (a platform
// mismatch, a missing platform, an immutable release tag, a registry error);
// 2 usage errors (unknown flags, missing or malformed arguments).
//
// Registry flags are shared by every command: --insecure (env CIEL_INSECURE),
// --ca-file (env CIEL_CA_FILE), --retries, --response-timeout, --jobs and
// --timeout. Credentials come from the docker config.json Kaniko uses
// ($DOCKER_CONFIG/config.json, else ~/.docker/config.json).
package command

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/internal/registryclient"
	"github.com/ciel-ci/ciel/internal/version"
	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK     = exitcode.OK
	ExitFailed = exitcode.Failure
	ExitUsage  = exitcode.Usage
)

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return exitcode.Errorf(ExitUsage, format, args...)
}

// asUsage marks err as a usage error (nil stays nil).
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return exitcode.New(ExitUsage, err)
}

// IsUsageError reports whether err comes from how the command was called.
func IsUsageError(err error) bool { return exitcode.Is(err, ExitUsage) }

// ExitCode maps the error returned by the command to the process exit code.
func ExitCode(err error) int { return exitcode.Code(err, ExitFailed) }

// globals are the flags every command shares and what they configure.
type globals struct {
	getenv func(string) string

	insecure        bool
	caFile          string
	retries         int
	responseTimeout time.Duration
	jobs            int
	timeout         time.Duration
	verbose         bool

	logger *slog.Logger
	client *registryclient.Client
}

// NewCommand returns the root `ciel` command.
func NewCommand() *cobra.Command {
	return newRootCmd(os.Getenv)
}

func newRootCmd(getenv func(string) string) *cobra.Command {
	g := &globals{getenv: getenv}
	root := &cobra.Command{
		Version: version.String(),
		Use:     "ciel",
		Short:   "Kubernetes-native CI for GitLab on Tekton: multi-arch indexes and release promotion",
		Long: `ciel merges per-architecture images into verified multi-arch indexes and
promotes tested indexes to release tags.

Exit codes: 0 success; 1 the operation was refused or failed; 2 usage error.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		Args:              noArgs,
		RunE:              groupRunE,
		PersistentPreRunE: g.setup,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return asUsage(err) })
	f := root.PersistentFlags()
	f.BoolVar(&g.insecure, "insecure", envBool(getenv, "CIEL_INSECURE"),
		"allow plain HTTP to registries that do not serve TLS (loopback and private addresses always may); never disables TLS verification (env CIEL_INSECURE)")
	f.StringVar(&g.caFile, "ca-file", getenv("CIEL_CA_FILE"),
		"PEM file of additional CA certificates to trust, for registries with a private or self-signed CA (env CIEL_CA_FILE)")
	f.IntVar(&g.retries, "retries", registryclient.DefaultAttempts-1,
		"retries of a request that failed with 408/429/5xx or a dropped connection, with exponential backoff")
	f.DurationVar(&g.responseTimeout, "response-timeout", registryclient.DefaultResponseTimeout,
		"how long a request waits for the registry's response headers")
	f.IntVar(&g.jobs, "jobs", registryclient.DefaultJobs, "registry requests run in parallel")
	f.DurationVar(&g.timeout, "timeout", 10*time.Minute, "bound on the whole command")
	f.BoolVarP(&g.verbose, "verbose", "v", false, "log each step to stderr")

	root.AddCommand(newIndexCmd(g), newReleaseCmd(g), newTektonCmd(g))
	return root
}

// setup validates the shared flags and builds the registry client.
func (g *globals) setup(cmd *cobra.Command, _ []string) error {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	g.logger = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	if g.retries < 0 {
		return usagef("--retries must not be negative, got %d", g.retries)
	}
	if g.timeout <= 0 {
		return usagef("--timeout must be positive, got %s", g.timeout)
	}
	client, err := registryclient.New(
		registryclient.WithInsecure(g.insecure),
		registryclient.WithCAFile(g.caFile),
		registryclient.WithRetry(g.retries+1, registryclient.DefaultRetryDelay),
		registryclient.WithResponseTimeout(g.responseTimeout),
		registryclient.WithJobs(g.jobs),
		registryclient.WithUserAgent(userAgent()),
		registryclient.WithLogger(g.logger),
	)
	if err != nil {
		return asUsage(err)
	}
	g.client = client
	return nil
}

// context returns the command's context bounded by --timeout.
func (g *globals) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	return context.WithTimeout(ctx, g.timeout)
}

// userAgent is "ciel/VERSION" (internal/version), "ciel/devel" for a
// build without a version.
func userAgent() string {
	v := version.String()
	if strings.HasPrefix(v, "(") {
		v = "devel"
	}
	return "ciel/" + v
}

func envBool(getenv func(string) string, key string) bool {
	b, err := strconv.ParseBool(getenv(key))
	return err == nil && b
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	return nil
}

// newGroupCmd returns a command that only groups subs: run without one of
// them, it prints its help and fails with a usage error.
func newGroupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: noArgs, RunE: groupRunE}
	cmd.AddCommand(subs...)
	return cmd
}

// groupRunE is the RunE of commands that only group subcommands.
func groupRunE(cmd *cobra.Command, _ []string) error {
	cmd.SetOut(cmd.ErrOrStderr())
	_ = cmd.Help()
	return usagef("%s needs a subcommand", cmd.CommandPath())
}

// writeResult writes a Tekton result file (no trailing newline); an empty
// path writes nothing.
func writeResult(path, value string) error {
	if path == "" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("writing result file: %w", err)
	}
	return nil
}
