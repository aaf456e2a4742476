package podrunner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// KanikoExecutorPath is where the Kaniko executor image keeps its program;
// the image has nothing else a step could run.
const KanikoExecutorPath = "/kaniko/executor"

// KanikoImageEnv is the environment the Kaniko executor image sets (its
// Dockerfile's ENV), which the container's own env overrides.
var KanikoImageEnv = []string{
	"HOME=/root",
	"USER=root",
	"PATH=/usr/local/bin:/kaniko",
	"SSL_CERT_DIR=/kaniko/ssl/certs",
	"DOCKER_CONFIG=/kaniko/.docker/",
}

// Kaniko runs a Kaniko step for real: the Kaniko executor (built from
// upstream's module, see test/e2e/build/kaniko) with the step's command,
// arguments and environment exactly as Tekton rendered them, in a sandbox
// whose root is fresh and empty but for what the executor image holds
// (/kaniko/executor, /kaniko/ssl/certs/ca-certificates.crt, an empty
// /kaniko/.docker/config.json, /etc/nsswitch.conf, /workspace) and the
// pod's volumes at the paths the Pod mounts them. Kaniko unpacks the base
// images over that root and RUNs the Dockerfile's commands in it, so the
// host's files are never visible to a build. The sandbox has private mount
// and PID namespaces and a /.dockerenv (what Docker puts in a container,
// which satisfies Kaniko's in-a-container check without --force); it shares
// the host's network (loopback registries work) and users (RUN runs as
// root on the host's kernel). It is a test device, no isolation for
// untrusted Dockerfiles.
//
// The executor writes its results (--digest-file into /tekton/results) into
// the pod's volumes itself; the runner reports them like any step's.
// Commands other than /kaniko/executor fail the pod as unsupported.
type Kaniko struct {
	// Helper is the e2e-sandbox program.
	Helper string
	// Executor is the host path of the Kaniko executor binary.
	Executor string
	// CABundle is the host PEM bundle installed as the image's
	// /kaniko/ssl/certs/ca-certificates.crt (default: Debian's
	// /etc/ssl/certs/ca-certificates.crt).
	CABundle string
	// Keep leaves each build's root in place (by default it is removed
	// when the build ends, as a container's root filesystem is).
	Keep bool
}

var _ Executor = (*Kaniko)(nil)

// Execute implements Executor.
func (k *Kaniko) Execute(ctx context.Context, s *Step) error {
	if k.Helper == "" || k.Executor == "" {
		return errors.New("kaniko: no sandbox helper or executor configured")
	}
	if len(s.Command) == 0 || s.Command[0] != KanikoExecutorPath {
		cmd := ""
		if len(s.Command) > 0 {
			cmd = s.Command[0]
		}
		return fmt.Errorf("kaniko: the executor image only runs %s, not %q", KanikoExecutorPath, cmd)
	}
	root := filepath.Join(s.ScratchDir, "root")
	if err := k.prepareRoot(root); err != nil {
		return fmt.Errorf("kaniko: preparing the image's root: %w", err)
	}
	step := *s
	step.Env = KanikoEnv(s)
	sb := &Sandbox{
		Helper:       k.Helper,
		HostPaths:    []string{},
		Programs:     map[string]string{KanikoExecutorPath: k.Executor},
		PIDNamespace: true,
	}
	start := time.Now()
	err := sb.Execute(ctx, &step)
	fmt.Fprintf(s.Stdout, "ciel-e2e: kaniko executor ran %s in the sandbox (%v)\n", time.Since(start).Round(time.Millisecond), exitText(err))
	if !k.Keep {
		if cerr := removeRoot(root); cerr != nil && err == nil {
			err = fmt.Errorf("kaniko: %w", cerr)
		}
	}
	return err
}

func exitText(err error) string {
	if err == nil {
		return "exit code 0"
	}
	return err.Error()
}

// prepareRoot lays out what the Kaniko executor image holds besides the
// executor, which the sandbox binds read-only.
func (k *Kaniko) prepareRoot(root string) error {
	ca := k.CABundle
	if ca == "" {
		ca = "/etc/ssl/certs/ca-certificates.crt"
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return fmt.Errorf("reading the CA bundle: %w", err)
	}
	for _, d := range []string{"kaniko/ssl/certs", "kaniko/.docker", "etc", "workspace"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	files := map[string][]byte{
		"kaniko/ssl/certs/ca-certificates.crt": caPEM,
		"kaniko/.docker/config.json":           []byte("{}\n"),
		"etc/nsswitch.conf":                    []byte("hosts: files dns\n"),
		".dockerenv":                           nil,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), body, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// KanikoEnv is the environment of a Kaniko container: the image's
// (KanikoImageEnv), then every variable the runner resolved from the pod
// (the container's env and envFrom, the Kubernetes service variables),
// except the generic PATH and HOME the runner assumes for unknown images
// when the container does not set them.
func KanikoEnv(s *Step) []string {
	declared := map[string]bool{}
	if s.Container != nil {
		for _, e := range s.Container.Env {
			declared[e.Name] = true
		}
	}
	env := newEnvList(KanikoImageEnv)
	for _, kv := range s.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		if (k == "PATH" || k == "HOME") && !declared[k] {
			continue
		}
		env.set(k, v)
	}
	return env.list()
}

// removeRoot deletes a build's root once its sandbox is gone. It refuses
// while anything is still mounted below root (a bind of the pod's volumes
// would be emptied through it).
func removeRoot(root string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("checking mounts before removing %s: %w", root, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == root || strings.HasPrefix(fields[4], root+"/")) {
			return fmt.Errorf("not removing %s: %s is still mounted", root, fields[4])
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("checking mounts before removing %s: %w", root, err)
	}
	return os.RemoveAll(root)
}
