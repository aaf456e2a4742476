package podrunner

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Step is one container the runner asks an Executor to run, with everything
// a container runtime would know about it.
type Step struct {
	Pod       *corev1.Pod
	Node      *corev1.Node
	Container *corev1.Container
	// Command is the program and its arguments, exactly as the step's
	// entrypoint would exec them ($(VAR) references already expanded).
	Command []string
	// Env is the container's environment, KEY=VALUE.
	Env []string
	// WorkingDir is the container's working directory ("/" by default).
	WorkingDir string
	// Mounts is the container's view of the pod's volumes.
	Mounts Mounts
	// OS, Arch and Variant are the node's platform.
	OS, Arch, Variant string
	// Stdout and Stderr receive the container's output (its log).
	Stdout, Stderr io.Writer
	// ScratchDir is an empty host directory private to this container.
	ScratchDir string
}

// HostPath returns the host path behind a path inside the container.
func (s *Step) HostPath(containerPath string) (string, error) {
	if !strings.HasPrefix(containerPath, "/") {
		wd := s.WorkingDir
		if wd == "" {
			wd = "/"
		}
		containerPath = strings.TrimSuffix(wd, "/") + "/" + containerPath
	}
	return s.Mounts.HostPath(containerPath)
}

// Getenv returns the value of the container's environment variable k.
func (s *Step) Getenv(k string) string {
	for i := len(s.Env) - 1; i >= 0; i-- {
		if name, v, ok := strings.Cut(s.Env[i], "="); ok && name == k {
			return v
		}
	}
	return ""
}

// ExitError is what an Executor returns when the step's program ran and
// exited with a non-zero code: a legitimate step failure, reported to
// Tekton like a container's exit code. Any other error from an Executor
// means the runner could not run the step faithfully: the pod fails and the
// runner records a problem that fails the test.
type ExitError struct {
	Code int
}

func (e *ExitError) Error() string { return fmt.Sprintf("exit code %d", e.Code) }

// Executor runs a step's program.
type Executor interface {
	Execute(ctx context.Context, s *Step) error
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, s *Step) error

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, s *Step) error { return f(ctx, s) }

// Rule routes the containers whose image Match accepts to Executor.
type Rule struct {
	// Name identifies the rule in records and errors.
	Name     string
	Match    func(image string) bool
	Executor Executor
}

// ImageContains matches images whose reference contains any of subs.
func ImageContains(subs ...string) func(string) bool {
	return func(image string) bool {
		for _, s := range subs {
			if strings.Contains(image, s) {
				return true
			}
		}
		return false
	}
}

// ImageMatches matches images whose reference re matches.
func ImageMatches(re *regexp.Regexp) func(string) bool {
	return re.MatchString
}
