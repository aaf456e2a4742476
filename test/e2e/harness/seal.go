package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The host side of the sealed network. Seal creates NetNS with lo up, the
// bridge NodeBridge carrying NodeIP/32 and a route for ServiceCIDR (there is
// no default route), turns forwarding on inside it only, registers qemu for
// arm64 binaries (binfmt_misc is global), adds unreachable routes on the host
// for the cluster's ranges (so that a client started outside the namespace by
// mistake fails instead of using the host's default route) and records what
// it changed in a state directory. Unseal undoes all of it from that
// directory alone, so it also works after a run that was killed, and checks
// that the host's routes, iptables and net.* sysctls are what they were.

// binfmtQemuAarch64 registers qemu-aarch64-static for ELF aarch64 binaries
// with the F (fix-binary) flag: the kernel opens the interpreter at
// registration, so it also works inside containers' mount namespaces.
const binfmtQemuAarch64 = `:qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F`

const binfmtDir = "/proc/sys/fs/binfmt_misc"

// globalSysctls are the non-network sysctls kubelets rewrite
// (protectKernelDefaults=false); Seal saves them and Unseal restores them.
var globalSysctls = []string{"vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
	"kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes"}

// hostGuardRoutes get an `unreachable` route on the host while sealed.
var hostGuardRoutes = []string{NodeIP + "/32", ServiceCIDR, PodCIDR}

// State files of the seal directory; each records one change to undo.
const (
	sealSysctls      = "sysctl.orig"
	sealHostNet      = "host-net.before"
	sealNetnsList    = "netns.before"
	sealCNICreated   = "cni-cache-created"
	sealRunNetnsMnt  = "run-netns-mounted"
	sealGuardRoutes  = "host-guard-routes"
	sealBinfmtReg    = "binfmt-registered"
	sealBinfmtMount  = "binfmt-mounted"
	sealNetnsCreated = "netns-created"
)

// Seal is a sealed network namespace made by SealHost.
type Seal struct {
	// Dir holds the state Unseal needs.
	Dir    string
	logger *slog.Logger
}

// NetNSPath is the namespace's bind mount.
func NetNSPath() string { return "/run/netns/" + NetNS }

// SealHost creates NetNS and the host-side guards, recording each change in
// dir. It refuses to run when NetNS exists (a previous run: use Unseal).
// On error, whatever was done is undone.
func SealHost(ctx context.Context, dir string, logger *slog.Logger) (_ *Seal, err error) {
	if logger == nil {
		logger = discardLogger()
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sealing the e2e network: needs root (network namespaces, routes, binfmt_misc)")
	}
	if _, err := os.Stat(NetNSPath()); err == nil {
		return nil, fmt.Errorf("sealing the e2e network: %s exists: a previous run left it (run e2e-run -down)", NetNSPath())
	}
	if _, err := os.Stat(filepath.Join(dir, sealNetnsCreated)); err == nil {
		return nil, fmt.Errorf("sealing the e2e network: %s records a seal that was not undone (run e2e-run -down)", dir)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &Seal{Dir: dir, logger: logger}
	defer func() {
		if err != nil {
			if uerr := Unseal(context.WithoutCancel(ctx), dir, logger); uerr != nil {
				logger.Error("undoing a failed seal", "err", uerr)
			}
		}
	}()
	wrap := func(e error) error { return fmt.Errorf("sealing the e2e network: %w", e) }

	var orig strings.Builder
	for _, k := range globalSysctls {
		if v, err := readSysctl(k); err == nil {
			fmt.Fprintf(&orig, "%s=%s\n", k, v)
		}
	}
	if err := s.write(sealSysctls, orig.String()); err != nil {
		return nil, wrap(err)
	}
	snap, err := hostNetState(ctx)
	if err != nil {
		return nil, wrap(err)
	}
	if err := s.write(sealHostNet, snap); err != nil {
		return nil, wrap(err)
	}
	if _, err := os.Stat("/var/lib/cni"); errors.Is(err, os.ErrNotExist) {
		if err := s.write(sealCNICreated, ""); err != nil {
			return nil, wrap(err)
		}
	}
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err := s.write(sealNetnsList, strings.Join(names, "\n")); err != nil {
		return nil, wrap(err)
	}
	// `ip netns add` makes /run/netns a shared bind mount of itself, which
	// `ip netns del` leaves behind.
	if !isMountPoint("/run/netns") {
		if err := s.write(sealRunNetnsMnt, ""); err != nil {
			return nil, wrap(err)
		}
	}
	if err := s.write(sealNetnsCreated, ""); err != nil {
		return nil, wrap(err)
	}
	if err := run(ctx, "ip", "netns", "add", NetNS); err != nil {
		return nil, wrap(err)
	}
	for _, r := range hostGuardRoutes {
		if err := run(ctx, "ip", "route", "add", "unreachable", r); err != nil {
			return nil, wrap(err)
		}
		if err := s.appendLine(sealGuardRoutes, r); err != nil {
			return nil, wrap(err)
		}
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", NodeBridge, "type", "bridge"},
		{"addr", "add", NodeIP + "/32", "dev", NodeBridge},
		{"link", "set", NodeBridge, "up"},
		// Service connections made in the namespace (the apiserver
		// calling webhooks, clients) need a route before kube-proxy's
		// OUTPUT DNAT applies: there is no default route.
		{"route", "add", ServiceCIDR, "dev", NodeBridge, "src", NodeIP},
	} {
		if err := run(ctx, "ip", append([]string{"-n", NetNS}, args...)...); err != nil {
			return nil, wrap(err)
		}
	}
	// Per namespace: pods of different nodes and Services need forwarding.
	if err := run(ctx, "nsenter", "--net="+NetNSPath(), "--", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return nil, wrap(err)
	}
	if err := s.registerBinfmt(); err != nil {
		return nil, wrap(err)
	}
	logger.Info("sealed network namespace ready", "netns", NetNS, "nodeIP", NodeIP)
	return s, nil
}

func (s *Seal) registerBinfmt() error {
	if _, err := os.Stat(filepath.Join(binfmtDir, "register")); errors.Is(err, os.ErrNotExist) {
		if err := syscall.Mount("binfmt_misc", binfmtDir, "binfmt_misc", 0, ""); err != nil {
			return fmt.Errorf("mounting binfmt_misc: %w", err)
		}
		if err := s.write(sealBinfmtMount, ""); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(binfmtDir, "qemu-aarch64")); err == nil {
		return nil // registered by someone else: leave it
	}
	if _, err := os.Stat("/usr/bin/qemu-aarch64-static"); err != nil {
		return fmt.Errorf("the arm64 node needs qemu-user-static (apt-get install qemu-user-static): %w", err)
	}
	if err := os.WriteFile(filepath.Join(binfmtDir, "register"), []byte(binfmtQemuAarch64), 0o200); err != nil {
		return fmt.Errorf("registering qemu-aarch64 with binfmt_misc: %w", err)
	}
	return s.write(sealBinfmtReg, "")
}

// Command returns a command running name inside NetNS. Only the network
// namespace changes (`nsenter --net`): `ip netns exec` would also make a new
// mount namespace with its own /sys, where cgroup v1 is invisible and the
// kubelet's mounts would not be seen by containerd.
func (s *Seal) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return NetNSCommand(ctx, name, args...)
}

// NetNSCommand returns a command running name inside NetNS, with EnvNetNS
// set in its environment.
func NetNSCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + NetNSPath(), "--", name}, args...)...)
	cmd.Env = append(os.Environ(), EnvNetNS+"="+NetNS)
	return cmd
}

// Unseal removes NetNS and undoes what the state in dir records; it is
// idempotent. Processes still in the namespace are the harness's (nothing
// else enters it): they are killed first. It returns an error when the
// host's network state differs from the snapshot taken by SealHost.
func Unseal(ctx context.Context, dir string, logger *slog.Logger) error {
	if logger == nil {
		logger = discardLogger()
	}
	var errs []error
	has := func(name string) bool { _, err := os.Stat(filepath.Join(dir, name)); return err == nil }
	if _, err := os.Stat(NetNSPath()); err == nil {
		if pids := netnsPids(ctx); len(pids) > 0 {
			logger.Warn("killing processes left in the network namespace", "netns", NetNS, "pids", pids)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			deadline := time.Now().Add(10 * time.Second)
			for len(netnsPids(ctx)) > 0 && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if pids := netnsPids(ctx); len(pids) > 0 {
			errs = append(errs, fmt.Errorf("processes %v are still in %s: not deleting it", pids, NetNS))
		} else if err := run(ctx, "ip", "netns", "del", NetNS); err != nil {
			errs = append(errs, err)
		} else {
			logger.Info("deleted the network namespace (its bridges, routes, iptables rules)", "netns", NetNS)
		}
	}
	// Pod network namespaces containerd pinned and a killed run left.
	if has(sealNetnsCreated) {
		before := map[string]bool{}
		if b, err := os.ReadFile(filepath.Join(dir, sealNetnsList)); err == nil {
			for _, n := range strings.Fields(string(b)) {
				before[n] = true
			}
		}
		entries, _ := os.ReadDir("/run/netns")
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "cni-") && !before[e.Name()] {
				p := filepath.Join("/run/netns", e.Name())
				_ = syscall.Unmount(p, syscall.MNT_DETACH)
				_ = os.Remove(p)
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, sealGuardRoutes)); err == nil {
		for _, r := range strings.Fields(string(b)) {
			if err := run(ctx, "ip", "route", "del", "unreachable", r); err != nil && !strings.Contains(err.Error(), "No such process") {
				errs = append(errs, err)
			}
		}
		_ = os.Remove(filepath.Join(dir, sealGuardRoutes))
	}
	if has(sealRunNetnsMnt) {
		if entries, _ := os.ReadDir("/run/netns"); len(entries) == 0 && isMountPoint("/run/netns") {
			if err := syscall.Unmount("/run/netns", 0); err != nil {
				errs = append(errs, fmt.Errorf("unmounting /run/netns: %w", err))
			}
		}
		_ = os.Remove(filepath.Join(dir, sealRunNetnsMnt))
	}
	if b, err := os.ReadFile(filepath.Join(dir, sealSysctls)); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			if cur, err := readSysctl(k); err == nil && cur != v {
				if err := writeSysctl(k, v); err != nil {
					errs = append(errs, err)
				} else {
					logger.Info("restored sysctl", "key", k, "value", v, "was", cur)
				}
			}
		}
	}
	// libcni's result cache: entries of our networks (named CNINetworkPrefix
	// + bridge) may be left by a killed run; the directories go when this
	// seal created them and they are empty.
	if entries, err := os.ReadDir("/var/lib/cni/results"); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), CNINetworkPrefix) {
				_ = os.Remove(filepath.Join("/var/lib/cni/results", e.Name()))
			}
		}
	}
	if has(sealCNICreated) {
		_ = os.Remove("/var/lib/cni/results")
		_ = os.Remove("/var/lib/cni")
	}
	if has(sealBinfmtReg) {
		if err := os.WriteFile(filepath.Join(binfmtDir, "qemu-aarch64"), []byte("-1"), 0o200); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("unregistering qemu-aarch64: %w", err))
		}
		_ = os.Remove(filepath.Join(dir, sealBinfmtReg))
	}
	if has(sealBinfmtMount) {
		if err := syscall.Unmount(binfmtDir, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmounting binfmt_misc: %w", err))
		}
		_ = os.Remove(filepath.Join(dir, sealBinfmtMount))
	}
	if before, err := os.ReadFile(filepath.Join(dir, sealHostNet)); err == nil {
		after, err := hostNetState(ctx)
		if err != nil {
			errs = append(errs, err)
		} else if d := lineDiff(string(before), after); d != "" {
			errs = append(errs, fmt.Errorf("the host's network state changed while sealed:\n%s", d))
		} else {
			logger.Info("host routes, iptables and net sysctls unchanged")
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(filepath.Join(dir, sealNetnsCreated))
	}
	return errors.Join(errs...)
}

// HostNetState is what sealing must not change on the host: iptables and
// ip6tables rules (counters stripped), all routes, and the forwarding,
// conf/all, conf/default and bridge sysctls.
func hostNetState(ctx context.Context) (string, error) {
	var b strings.Builder
	counters := regexp.MustCompile(`\[[0-9]+:[0-9]+\]`)
	for _, c := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"ip", "-4", "route", "show", "table", "all"}, {"ip", "-6", "route", "show", "table", "all"}} {
		out, err := exec.CommandContext(ctx, c[0], c[1:]...).Output()
		if err != nil {
			return "", fmt.Errorf("snapshotting the host network (%s): %w", strings.Join(c, " "), err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			b.WriteString(counters.ReplaceAllString(line, ""))
			b.WriteByte('\n')
		}
	}
	var keys []string
	_ = filepath.WalkDir("/proc/sys/net", func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		k := strings.ReplaceAll(strings.TrimPrefix(p, "/proc/sys/"), "/", ".")
		if k == "net.ipv4.ip_forward" || k == "net.ipv6.conf.all.forwarding" || strings.HasPrefix(k, "net.bridge.") ||
			strings.HasPrefix(k, "net.ipv4.conf.all.") || strings.HasPrefix(k, "net.ipv4.conf.default.") {
			keys = append(keys, k)
		}
		return nil
	})
	sort.Strings(keys)
	for _, k := range keys {
		if v, err := readSysctl(k); err == nil {
			fmt.Fprintf(&b, "%s = %s\n", k, v)
		}
	}
	return b.String(), nil
}

// lineDiff lists lines only in a ("-") or only in b ("+"); "" when equal.
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		for ; n > 0; n-- {
			out = append(out, "- "+l)
		}
		for ; n < 0; n++ {
			out = append(out, "+ "+l)
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

// netnsPids lists the processes in NetNS.
func netnsPids(ctx context.Context) []int {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", NetNS).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(value), 0o644); err != nil {
		return fmt.Errorf("restoring %s=%s: %w", key, value, err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point (in /proc/self/mountinfo).
func isMountPoint(path string) bool {
	for _, m := range mountPoints() {
		if m == path {
			return true
		}
	}
	return false
}

// mountPoints lists the mount points of the current mount namespace.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (s *Seal) write(name, content string) error {
	return os.WriteFile(filepath.Join(s.Dir, name), []byte(content), 0o644)
}

func (s *Seal) appendLine(name, line string) error {
	f, err := os.OpenFile(filepath.Join(s.Dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}
