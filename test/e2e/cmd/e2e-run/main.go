// Command e2e-run runs a test binary inside the end-to-end suite's sealed
// network namespace:
//
//	e2e-run [-down | -prepare] [-cache DIR] [-- <test binary> [args]]
//
// It prepares what needs the Go module proxy (harness.Prepare), seals the
// host (harness.SealHost), runs the binary with nsenter --net in the
// namespace with CIEL_E2E_NETNS and CIEL_E2E_PREPARED set, then tears down
// whatever the run left and unseals (always, also on SIGINT/SIGTERM), and
// exits with the binary's status. -down only tears down and unseals, for a
// run that was killed midway; -prepare only prepares (test/run.sh runs it
// while the rest of the suite runs).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ciel-ci/ciel/test/e2e/harness"
)

func main() { os.Exit(run()) }

func run() int {
	down := flag.Bool("down", false, "only tear down what a killed run left and unseal the host")
	prepareOnly := flag.Bool("prepare", false, "only prepare (build and download what the suite needs), e.g. while other tests run")
	cache := flag.String("cache", "", "cache directory (default $CIEL_E2E_CACHE, else ~/.cache/ciel-e2e)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: e2e-run [-down | -prepare] [-cache DIR] [-- <test binary> [args]]")
		flag.PrintDefaults()
	}
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *cache == "" {
		d, err := harness.DefaultCacheDir()
		if err != nil {
			logger.Error("e2e-run", "err", err)
			return 2
		}
		*cache = d
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *down {
		if err := harness.Down(context.WithoutCancel(ctx), *cache, logger); err != nil {
			logger.Error("tearing down", "err", err)
			return 1
		}
		return 0
	}
	if flag.NArg() == 0 && !*prepareOnly {
		flag.Usage()
		return 2
	}
	wd, err := os.Getwd()
	if err != nil {
		logger.Error("e2e-run", "err", err)
		return 2
	}
	root, err := harness.FindModuleRoot(wd)
	if err != nil {
		logger.Error("e2e-run", "err", err)
		return 2
	}
	start := time.Now()
	_, manifest, err := harness.Prepare(ctx, harness.PrepareConfig{E2ERoot: root, CacheDir: *cache, Logger: logger})
	if err != nil {
		logger.Error("preparing", "err", err)
		return 1
	}
	logger.Info("prepared", "manifest", manifest, "took", time.Since(start).Round(time.Millisecond))
	if *prepareOnly {
		return 0
	}
	test, err := filepath.Abs(flag.Arg(0))
	if err != nil {
		logger.Error("e2e-run", "err", err)
		return 2
	}
	if _, err := harness.SealHost(ctx, harness.SealDir(*cache), logger); err != nil {
		logger.Error("sealing", "err", err)
		return 1
	}
	code := runInside(ctx, logger, manifest, test, flag.Args()[1:])
	if err := harness.Down(context.WithoutCancel(ctx), *cache, logger); err != nil {
		logger.Error("tearing down", "err", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// runInside runs the test binary in the sealed namespace and returns its
// exit status. A signal to e2e-run is passed on to it; e2e-run waits for it
// to finish its own teardown.
func runInside(ctx context.Context, logger *slog.Logger, manifest, test string, args []string) int {
	cmd := harness.NetNSCommand(context.WithoutCancel(ctx), test, args...)
	cmd.Env = append(cmd.Env, harness.EnvPrepared+"="+manifest)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		logger.Error("starting the test binary", "err", err)
		return 1
	}
	exited := make(chan struct{})
	defer close(exited)
	go func() {
		select {
		case <-ctx.Done():
			logger.Warn("signal: stopping the test binary")
			_ = cmd.Process.Signal(syscall.SIGTERM)
		case <-exited:
		}
	}()
	err := cmd.Wait()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		if exit.ExitCode() >= 0 {
			return exit.ExitCode()
		}
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()) // the shell's convention
		}
		return 1
	default:
		logger.Error("running the test binary", "err", err)
		return 1
	}
}
