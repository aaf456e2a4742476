// Package sandbox runs one program the way a container runtime would run a
// container's process, close enough for the end-to-end pod runner: in a
// private mount namespace, chrooted into a fresh root that holds the host's
// system directories read-only (the "image": the host's sh, git, ...), a
// small /dev, /proc, /tmp, and the container's volume mounts at the paths
// the Pod declares. It shares the host's network and users and is no
// isolation for untrusted code; it exists so that steps see exactly the
// paths Tekton rendered (/tekton/results, /workspace/..., /tekton/scripts).
//
// The runner starts the helper program (cmd/e2e-sandbox) with
// CLONE_NEWNS; the helper calls Main, which reads a Spec from the file named
// by its only argument, sets up the root and execs the program.
// It needs CAP_SYS_ADMIN (root).
package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Mount binds Source (a host file or directory) at Target inside the root.
type Mount struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// Spec is what the helper sets up and runs.
type Spec struct {
	// Root is an empty host directory that becomes "/".
	Root string `json:"root"`
	// HostPaths are host directories bound read-only at the same path
	// (a host symlink, e.g. /bin -> usr/bin, is recreated as a symlink).
	HostPaths []string `json:"hostPaths"`
	// Mounts are bound in order after the host paths.
	Mounts []Mount `json:"mounts"`
	// Dir is the working directory inside the root (created if missing,
	// like a container runtime does).
	Dir string `json:"dir"`
	// Env is the program's whole environment; its PATH finds Args[0].
	Env []string `json:"env"`
	// Args is the program and its arguments.
	Args []string `json:"args"`
	// ErrorFile receives the reason when the helper fails before the
	// program starts, so that the runner can tell a setup failure from
	// the program's own exit code.
	ErrorFile string `json:"errorFile"`
}

// DefaultHostPaths are the host directories that make up a sandbox's
// "image".
var DefaultHostPaths = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"}

// Main runs the helper: it never returns when the program starts, and
// exits with status 111 after writing Spec.ErrorFile when setup fails.
func Main(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: e2e-sandbox SPEC.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e-sandbox:", err)
		os.Exit(111)
	}
	var spec Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		fmt.Fprintln(os.Stderr, "e2e-sandbox: decoding the spec:", err)
		os.Exit(111)
	}
	// Opened before the chroot, which hides the host path; close-on-exec,
	// so the program never sees it.
	var errFile *os.File
	if spec.ErrorFile != "" {
		if errFile, err = os.OpenFile(spec.ErrorFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "e2e-sandbox:", err)
			os.Exit(111)
		}
	}
	err = run(&spec)
	// run only returns on failure.
	msg := fmt.Sprintf("sandbox setup failed: %v", err)
	if errFile != nil {
		_, _ = errFile.WriteString(msg)
		_ = errFile.Close()
	}
	fmt.Fprintln(os.Stderr, "e2e-sandbox:", msg)
	os.Exit(111)
}

func run(spec *Spec) error {
	if len(spec.Args) == 0 {
		return errors.New("no program")
	}
	root := spec.Root
	// Keep every mount below private to this namespace.
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	for _, hp := range spec.HostPaths {
		fi, err := os.Lstat(hp)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		dst := filepath.Join(root, hp)
		if fi.Mode()&os.ModeSymlink != 0 {
			target, err := os.Readlink(hp)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			continue
		}
		if err := bind(hp, dst, true, true); err != nil {
			return err
		}
	}
	if err := makeDev(root); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
		return err
	}
	if err := syscall.Mount("proc", filepath.Join(root, "proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	for _, d := range []string{"tmp", "var/tmp", "root", "home", "run"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "var/tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	for _, m := range spec.Mounts {
		if err := bind(m.Source, filepath.Join(root, m.Target), m.ReadOnly, false); err != nil {
			return fmt.Errorf("mounting %s: %w", m.Target, err)
		}
	}
	if err := syscall.Chroot(root); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	dir := spec.Dir
	if dir == "" {
		dir = "/"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating the working directory %s: %w", dir, err)
	}
	if err := os.Chdir(dir); err != nil {
		return err
	}
	path := ""
	for _, kv := range spec.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	if err := os.Setenv("PATH", path); err != nil {
		return err
	}
	prog := spec.Args[0]
	if !strings.Contains(prog, "/") {
		p, err := exec.LookPath(prog)
		if err != nil {
			return fmt.Errorf("%s: not found in PATH %s inside the sandbox (the host provides the image's programs)", prog, path)
		}
		prog = p
	} else if _, err := os.Stat(prog); err != nil {
		return fmt.Errorf("%s: %w inside the sandbox (the host provides the image's programs)", prog, err)
	}
	return syscall.Exec(prog, spec.Args, spec.Env)
}

// bind bind-mounts src on dst (creating dst as a file or directory like
// src), read-only if ro.
func bind(src, dst string, ro, recursive bool) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		f.Close()
	}
	flags := uintptr(syscall.MS_BIND)
	if recursive {
		flags |= syscall.MS_REC
	}
	if err := syscall.Mount(src, dst, "", flags, ""); err != nil {
		return fmt.Errorf("binding %s on %s: %w", src, dst, err)
	}
	if ro {
		if err := syscall.Mount("", dst, "", flags|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("making %s read-only: %w", dst, err)
		}
	}
	return nil
}

// makeDev builds a minimal /dev: a tmpfs with the usual character devices
// bound from the host and the standard symlinks.
func makeDev(root string) error {
	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, d := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		if err := bind("/dev/"+d, filepath.Join(dev, d), false, false); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return os.MkdirAll(filepath.Join(dev, "shm"), 0o1777)
}
