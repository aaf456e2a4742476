package harness

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSealHost seals the host (root only), checks from inside the namespace
// that nothing outside is routable, leaves a process behind as a killed run
// would, and checks that Unseal removes everything and the host's network
// state is unchanged.
func TestSealHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if os.Getenv(EnvNetNS) != "" {
		t.Skip("already inside the sealed namespace")
	}
	if _, err := os.Stat(NetNSPath()); err == nil {
		t.Skipf("%s exists: another run is using it", NetNSPath())
	}
	for _, c := range []string{"ip", "nsenter", "iptables-save", "ip6tables-save"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("no %s", c)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	runNetnsWasMount := isMountPoint("/run/netns")
	seal, err := SealHost(ctx, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	unsealed := false
	defer func() {
		if !unsealed {
			_ = Unseal(context.Background(), dir, nil)
		}
	}()

	out, err := seal.Command(ctx, "ip", "route", "show", "default").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("default route in %s: %q, %v; want none", NetNS, out, err)
	}
	out, err = seal.Command(ctx, "ip", "route", "get", SealProbeIP).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Network is unreachable") {
		t.Errorf("ip route get %s in %s: %q, %v; want Network is unreachable", SealProbeIP, NetNS, out, err)
	}
	out, err = seal.Command(ctx, "ip", "route", "get", KubernetesServiceIP).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "dev "+NodeBridge) {
		t.Errorf("ip route get %s in %s: %q, %v; want a route via %s", KubernetesServiceIP, NetNS, out, err, NodeBridge)
	}
	out, err = seal.Command(ctx, "sysctl", "-n", "net.ipv4.ip_forward").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Errorf("ip_forward in %s: %q, %v; want 1", NetNS, out, err)
	}
	// The host guard: the cluster's addresses are unreachable on the host.
	out, err = exec.CommandContext(ctx, "ip", "route", "get", NodeIP).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No route to host") {
		t.Errorf("host ip route get %s: %q, %v; want No route to host", NodeIP, out, err)
	}
	if _, err := os.Stat(binfmtDir + "/qemu-aarch64"); err != nil {
		t.Errorf("qemu-aarch64 not registered: %v", err)
	}
	// A process left in the namespace, as by a killed run.
	left := seal.Command(context.Background(), "sleep", "600")
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = left.Wait() }()
	time.Sleep(300 * time.Millisecond)

	unsealed = true
	if err := Unseal(ctx, dir, nil); err != nil {
		t.Fatalf("Unseal: %v", err)
	}
	if _, err := os.Stat(NetNSPath()); err == nil {
		t.Errorf("%s still exists", NetNSPath())
	}
	if !runNetnsWasMount && isMountPoint("/run/netns") {
		t.Error("/run/netns is still a mount point")
	}
	out, _ = exec.CommandContext(ctx, "ip", "route", "show", "table", "all").CombinedOutput()
	if strings.Contains(string(out), "unreachable "+NodeIP) {
		t.Errorf("host guard route left:\n%s", out)
	}
	// Unseal is idempotent.
	if err := Unseal(ctx, dir, nil); err != nil {
		t.Errorf("second Unseal: %v", err)
	}
}

func TestLineDiff(t *testing.T) {
	for _, tc := range []struct{ a, b, want string }{
		{"x\ny\n", "x\ny\n", ""},
		{"x\ny\n", "y\nx\n", ""},
		{"x\n", "x\nz\n", "+ z"},
		{"x\nz\n", "x\n", "- z"},
	} {
		if got := lineDiff(tc.a, tc.b); got != tc.want {
			t.Errorf("lineDiff(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}
