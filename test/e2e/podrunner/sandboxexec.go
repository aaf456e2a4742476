package podrunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ciel-ci/ciel/test/e2e/podrunner/sandbox"
)

// Sandbox runs a step's program for real, on the host, inside the sandbox
// helper (see package sandbox): a private mount namespace and chroot whose
// root holds the host's system directories read-only, with the pod's
// volumes mounted where the Pod declares them. The host therefore plays the
// step image: a git image's step runs the host's git, a script runs under
// the host's /bin/sh.
type Sandbox struct {
	// Helper is the e2e-sandbox program.
	Helper string
	// HostPaths are the host directories that form the image (default:
	// sandbox.DefaultHostPaths).
	HostPaths []string
	// Binds are extra host paths mounted in every sandbox, after the pod's
	// volumes (e.g. a local Git repository a clone step reads).
	Binds []sandbox.Mount
	// Programs maps a path inside the sandbox to a host file bound there
	// read-only (e.g. "/ko-app/ciel" to the ciel binary built from this
	// repository).
	Programs map[string]string
	// PathPrepend is put in front of the container's PATH.
	PathPrepend []string
	// Rewrite, when set, may rewrite the command before it runs (e.g. to
	// point "ciel" at Programs' "/ko-app/ciel").
	Rewrite func(command []string) []string
	// PIDNamespace runs the program in a PID namespace of its own, as
	// PID 1, with a /proc showing only its processes; when it exits, the
	// kernel kills whatever it left running.
	PIDNamespace bool
}

var _ Executor = (*Sandbox)(nil)

// Execute implements Executor.
func (sb *Sandbox) Execute(ctx context.Context, s *Step) error {
	if sb.Helper == "" {
		return errors.New("sandbox: no helper program configured")
	}
	if len(s.Command) == 0 {
		return errors.New("sandbox: empty command")
	}
	root := filepath.Join(s.ScratchDir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	hostPaths := sb.HostPaths
	if hostPaths == nil {
		hostPaths = sandbox.DefaultHostPaths
	}
	var mounts []sandbox.Mount
	for target, src := range sb.Programs {
		mounts = append(mounts, sandbox.Mount{Source: src, Target: target, ReadOnly: true})
	}
	for _, m := range s.Mounts {
		mounts = append(mounts, sandbox.Mount{Source: m.HostPath, Target: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	mounts = append(mounts, sb.Binds...)

	env := append([]string(nil), s.Env...)
	path := ""
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
			env = append(env[:i], env[i+1:]...)
			break
		}
	}
	if path == "" {
		path = defaultPath
	}
	if len(sb.PathPrepend) > 0 {
		path = strings.Join(sb.PathPrepend, ":") + ":" + path
	}
	env = append(env, "PATH="+path)

	command := s.Command
	if sb.Rewrite != nil {
		command = sb.Rewrite(append([]string(nil), command...))
	}
	errFile := filepath.Join(s.ScratchDir, "sandbox-error")
	spec := sandbox.Spec{
		Root: root, HostPaths: hostPaths, Mounts: mounts, Dir: s.WorkingDir,
		Env: env, Args: command, ErrorFile: errFile,
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	specFile := filepath.Join(s.ScratchDir, "sandbox.json")
	if err := os.WriteFile(specFile, b, 0o600); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	cmd := exec.CommandContext(ctx, sb.Helper, specFile)
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: syscall.CLONE_NEWNS,
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
	}
	if sb.PIDNamespace {
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	runErr := cmd.Run()
	if msg, err := os.ReadFile(errFile); err == nil && len(bytes.TrimSpace(msg)) > 0 {
		return fmt.Errorf("sandbox: %s", bytes.TrimSpace(msg))
	}
	if runErr == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return &ExitError{Code: 128 + int(ws.Signal())}
		}
		return &ExitError{Code: ee.ExitCode()}
	}
	return fmt.Errorf("sandbox: running %s: %w", sb.Helper, runErr)
}
