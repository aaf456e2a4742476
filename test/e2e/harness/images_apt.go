package harness

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// aptRoot runs apt-get and apt-cache for one Debian architecture with its
// own package lists and an empty dpkg status under dir: the host's apt
// state, its architectures and installed packages are left alone, and
// the dependency closure is complete (nothing counts as installed).
type aptRoot struct {
	dir, arch string
}

func newAptRoot(dir, arch string) *aptRoot { return &aptRoot{dir: dir, arch: arch} }

func (a *aptRoot) init() error {
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (a *aptRoot) options() []string {
	return []string{
		"-q", "-o", "APT::Architecture=" + a.arch, "-o", "APT::Architectures::=" + a.arch,
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Dir::State::status=/dev/null",
		"-o", "APT::Sandbox::User=root",
	}
}

func (a *aptRoot) run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	return a.runIn(ctx, a.dir, prog, args...)
}

func (a *aptRoot) runIn(ctx context.Context, dir, prog string, args ...string) ([]byte, error) {
	out, err := runImageCmd(ctx, dir, prog, append(a.options(), args...)...)
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, out)
	}
	return out, nil
}

// closure returns pkg and every package its Depends and Pre-Depends reach,
// recursively (no Recommends or Suggests), as apt-cache lists them; virtual
// packages ("<perl:any>") are left out, the packages providing them are
// in the list.
func (a *aptRoot) closure(ctx context.Context, pkg string) ([]string, error) {
	out, err := a.run(ctx, "apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
		"--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", pkg)
	if err != nil {
		return nil, err
	}
	return parseAptClosure(out), nil
}

// parseAptClosure reads the package lines (unindented) of apt-cache
// depends --recurse output, sorted, without virtual packages.
func parseAptClosure(out []byte) []string {
	seen := map[string]bool{}
	var pkgs []string
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '<' {
			continue
		}
		p := strings.TrimSpace(line)
		if i := strings.IndexByte(p, ':'); i >= 0 {
			p = p[:i]
		}
		if p != "" && !seen[p] {
			seen[p] = true
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	return pkgs
}

// runImageCmd runs a program in dir and returns its combined output.
func runImageCmd(ctx context.Context, dir, prog string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s: %w", prog, strings.Join(args, " "), err)
	}
	return out.Bytes(), nil
}
