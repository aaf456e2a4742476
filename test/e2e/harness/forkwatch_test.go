package harness

import (
	"context"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"
)

// TestUnstickForks: a child that keeps its parent's command line (a
// forked perl that never execs, as a fork stuck before exec looks; perl is
// essential in Debian) is killed once older than the limit; the parent
// goes on.
func TestUnstickForks(t *testing.T) {
	cmd := exec.Command("perl", "-e", `my $p = fork(); if ($p == 0) { sleep 30; exit 0 } waitpid($p, 0); print "parent-continued\n";`)
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var killed atomic.Int64
	go unstickForks(ctx, cmd.Process.Pid, "test", time.Second, discardLogger(), &killed)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the stuck child was not killed")
	}
	if killed.Load() != 1 {
		t.Errorf("killed %d children, want 1", killed.Load())
	}
	b, _ := os.ReadFile(out.Name())
	if string(b) != "parent-continued\n" {
		t.Errorf("parent output %q", b)
	}
	if got := procParent(os.Getpid()); got != os.Getppid() {
		t.Errorf("procParent(self) = %d, want %d", got, os.Getppid())
	}
}
