package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/ciel-ci/ciel/test/e2e/podrunner"
	"github.com/ciel-ci/ciel/test/e2e/podrunner/sandbox"
)

// Images the default pod-runner rules recognise.
var (
	// CielImage matches ciel's own image: a reference whose repository ends
	// in "/ciel" (ko builds put the binary at /ko-app/ciel).
	CielImage = regexp.MustCompile(`(^|/)ciel([:@]|$)`)
	// KanikoImage matches the Kaniko executor's images.
	KanikoImage = regexp.MustCompile(`(^|/)kaniko-project/executor([:@]|$)|(^|/)kaniko([:@]|$)`)
	// GitImage matches images whose steps run git and a POSIX shell.
	GitImage = regexp.MustCompile(`(^|/)(git|alpine/git|git-init)([:@]|$)`)
)

type runnerOptions struct {
	rules []podrunner.Rule
	binds []sandbox.Mount
}

// RunnerOption configures StartPodRunner.
type RunnerOption func(*runnerOptions) error

// WithRule adds a rule checked before the default ones.
func WithRule(r podrunner.Rule) RunnerOption {
	return func(o *runnerOptions) error {
		if r.Name == "" || r.Match == nil || r.Executor == nil {
			return errors.New("a pod-runner rule needs a name, a matcher and an executor")
		}
		o.rules = append(o.rules, r)
		return nil
	}
}

// WithSandboxBind makes a host path visible, read-only, at the same path in
// every sandboxed step (e.g. a local Git repository a clone step reads).
func WithSandboxBind(hostPath string) RunnerOption {
	return func(o *runnerOptions) error {
		if !filepath.IsAbs(hostPath) {
			return fmt.Errorf("sandbox bind %q is not absolute", hostPath)
		}
		o.binds = append(o.binds, sandbox.Mount{Source: hostPath, Target: hostPath, ReadOnly: true})
		return nil
	}
}

var (
	sandboxOnce sync.Once
	sandboxPath string
	sandboxErr  error
)

// SandboxHelper builds the pod runner's sandbox helper (cmd/e2e-sandbox)
// once and returns its path.
func (e *Env) SandboxHelper() (string, error) {
	sandboxOnce.Do(func() {
		sandboxPath = filepath.Join(e.RunDir, "bin", "e2e-sandbox")
		sandboxErr = GoBuild(context.Background(), e.ModuleRoot, "./cmd/e2e-sandbox", sandboxPath)
	})
	return sandboxPath, sandboxErr
}

// StartPodRunner starts a pod runner for the namespaces and stops it when the
// test ends; every problem it recorded (an unschedulable pod, an image no
// rule claims, a step it could not run faithfully) fails the test. The
// rules, after those given WithRule, are:
//
//   - ciel: images matching CielImage run the ciel binary built from this
//     repository, at /ko-app/ciel, in the sandbox;
//   - kaniko: images matching KanikoImage run the real Kaniko executor
//     (built from build/kaniko) in a fresh sandbox root (podrunner.Kaniko);
//   - git: images matching GitImage run the step with the host's git and
//     shell in the sandbox.
func (e *Env) StartPodRunner(t testing.TB, namespaces []string, opts ...RunnerOption) *podrunner.Runner {
	t.Helper()
	var o runnerOptions
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatalf("configuring the pod runner: %v", err)
		}
	}
	helper, err := e.SandboxHelper()
	if err != nil {
		t.Fatal(err)
	}
	needRoot := podrunner.ExecutorFunc(func(context.Context, *podrunner.Step) error {
		return errors.New("running steps in the sandbox needs root (mount namespaces and chroot)")
	})
	sandboxed := func(sb *podrunner.Sandbox) podrunner.Executor {
		if os.Geteuid() != 0 {
			return needRoot
		}
		return sb
	}
	ciel := podrunner.ExecutorFunc(func(ctx context.Context, s *podrunner.Step) error {
		bin, err := e.CielBinary()
		if err != nil {
			return err
		}
		return sandboxed(&podrunner.Sandbox{
			Helper:      helper,
			Binds:       o.binds,
			Programs:    map[string]string{"/ko-app/ciel": bin},
			PathPrepend: []string{"/ko-app"},
			Rewrite: func(cmd []string) []string {
				if path.Base(cmd[0]) == "ciel" {
					cmd[0] = "/ko-app/ciel"
				}
				return cmd
			},
		}).Execute(ctx, s)
	})
	rules := append(append([]podrunner.Rule(nil), o.rules...),
		podrunner.Rule{Name: "ciel", Match: podrunner.ImageMatches(CielImage), Executor: ciel},
		podrunner.Rule{Name: "kaniko", Match: podrunner.ImageMatches(KanikoImage), Executor: e.kanikoExecutor()},
		podrunner.Rule{Name: "git", Match: podrunner.ImageMatches(GitImage), Executor: sandboxed(&podrunner.Sandbox{Helper: helper, Binds: o.binds})},
	)
	work := filepath.Join(e.RunDir, "podrunner", strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")+"-"+randomSuffix())
	r, err := podrunner.New(podrunner.Config{
		Kube:       e.Kube,
		Namespaces: namespaces,
		WorkDir:    work,
		Rules:      rules,
		BaseEnv: []string{
			"KUBERNETES_SERVICE_HOST=127.0.0.1",
			"KUBERNETES_SERVICE_PORT=" + strings.TrimPrefix(e.APIServerURL, "https://127.0.0.1:"),
		},
		Logger: e.logger.With("component", "podrunner", "test", t.Name()),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(testContext(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		for _, p := range r.Problems() {
			t.Errorf("pod runner: %v", p)
		}
		if t.Failed() {
			for _, rec := range r.Records() {
				for _, c := range rec.Containers {
					t.Logf("pod %s/%s container %s (rule %q, exit %d) log %s:\n%s", rec.Namespace, rec.Name, c.Name, c.Rule, c.ExitCode, c.LogFile, tailFile(c.LogFile, 3000))
				}
			}
		}
	})
	return r
}

// Kaniko returns the executor of the kaniko rule: the real Kaniko executor
// built from build/kaniko, run in a fresh sandbox root (podrunner.Kaniko).
// It needs root.
func (e *Env) Kaniko() (*podrunner.Kaniko, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("running Kaniko in the sandbox needs root (mount and PID namespaces, chroot)")
	}
	exe := e.Binary("kaniko-executor")
	if exe == "" {
		return nil, errors.New("the harness built no kaniko-executor")
	}
	helper, err := e.SandboxHelper()
	if err != nil {
		return nil, err
	}
	return &podrunner.Kaniko{Helper: helper, Executor: exe, Keep: os.Getenv("CIEL_E2E_KEEP") == "1"}, nil
}

func (e *Env) kanikoExecutor() podrunner.Executor {
	k, err := e.Kaniko()
	if err != nil {
		return podrunner.ExecutorFunc(func(context.Context, *podrunner.Step) error { return err })
	}
	return k
}
