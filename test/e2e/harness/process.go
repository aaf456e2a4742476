package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessSpec describes a program for the Supervisor to start.
type ProcessSpec struct {
	// Name identifies the process in logs and pid files; it must be unique
	// among the supervisor's live processes.
	Name string
	// Path is the executable.
	Path string
	// Args are the arguments, without the program name.
	Args []string
	// Env is added to the harness's own environment (later entries win).
	Env []string
	// Dir is the working directory (default: the supervisor's run directory).
	Dir string
}

// Process is a program the Supervisor started. Its standard output and error
// go to LogFile.
type Process struct {
	Name    string
	LogFile string
	Pid     int

	cmd     *exec.Cmd
	pidFile string
	done    chan struct{}
	waitErr error
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error once Done is closed.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.waitErr
	default:
		return nil
	}
}

// Running reports whether the process has not exited yet.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM to the process group, waits up to grace for the process
// to exit, then sends SIGKILL to the group. It returns once the process has
// been reaped. Stopping an exited process is a no-op.
func (p *Process) Stop(grace time.Duration) {
	if !p.Running() {
		killGroup(p.Pid, syscall.SIGKILL) // children it may have left behind
		_ = os.Remove(p.pidFile)
		return
	}
	killGroup(p.Pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		killGroup(p.Pid, syscall.SIGKILL)
		<-p.done
	}
	killGroup(p.Pid, syscall.SIGKILL)
	_ = os.Remove(p.pidFile)
}

// Tail returns up to max bytes from the end of the process's log.
func (p *Process) Tail(max int) string { return tailFile(p.LogFile, max) }

// killGroup signals the process group led by pid (every process the harness
// starts leads its own group).
func killGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, sig)
}

// Supervisor starts programs in their own process groups with their output in
// log files, records each in a pid file so that a later run can remove what a
// killed run left behind (see SweepStale), and stops them all in reverse
// order.
//
// Every process is started from one goroutine locked to its OS thread, with
// SIGKILL as its parent-death signal: when the test binary dies for any
// reason — a panic, a -timeout, a SIGKILL — the kernel kills the processes it
// started.
type Supervisor struct {
	logDir string
	pidDir string
	runDir string
	logger *slog.Logger

	mu    sync.Mutex
	procs []*Process

	spawnOnce sync.Once
	spawnReq  chan spawnRequest
}

// NewSupervisor returns a supervisor writing logs under runDir/logs and pid
// files under pidDir.
func NewSupervisor(runDir, pidDir string, logger *slog.Logger) (*Supervisor, error) {
	if logger == nil {
		logger = discardLogger()
	}
	logDir := filepath.Join(runDir, "logs")
	for _, d := range []string{logDir, pidDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	return &Supervisor{logDir: logDir, pidDir: pidDir, runDir: runDir, logger: logger}, nil
}

// LogDir is the directory holding the processes' logs.
func (s *Supervisor) LogDir() string { return s.logDir }

type spawnRequest struct {
	cmd   *exec.Cmd
	reply chan error
}

// spawner starts processes from a single OS thread that lives as long as the
// test binary: Pdeathsig fires when the thread that forked a child exits, so
// that thread must never exit before the process does.
func (s *Supervisor) spawner() {
	runtime.LockOSThread()
	for req := range s.spawnReq {
		req.reply <- req.cmd.Start()
	}
}

// Start starts the process described by spec.
func (s *Supervisor) Start(spec ProcessSpec) (*Process, error) {
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/ \t") {
		return nil, fmt.Errorf("starting %s: invalid process name %q", spec.Path, spec.Name)
	}
	s.mu.Lock()
	for _, p := range s.procs {
		if p.Name == spec.Name && p.Running() {
			s.mu.Unlock()
			return nil, fmt.Errorf("starting %s: a process of that name is already running", spec.Name)
		}
	}
	s.mu.Unlock()

	logFile := filepath.Join(s.logDir, spec.Name+".log")
	logf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}
	fmt.Fprintf(logf, "=== %s: %s %s\n", time.Now().Format(time.RFC3339), spec.Path, strings.Join(spec.Args, " "))

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = s.runDir
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	s.spawnOnce.Do(func() {
		s.spawnReq = make(chan spawnRequest)
		go s.spawner()
	})
	reply := make(chan error, 1)
	s.spawnReq <- spawnRequest{cmd: cmd, reply: reply}
	if err := <-reply; err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", spec.Name, err)
	}

	p := &Process{
		Name:    spec.Name,
		LogFile: logFile,
		Pid:     cmd.Process.Pid,
		cmd:     cmd,
		pidFile: filepath.Join(s.pidDir, fmt.Sprintf("%d-%s.json", cmd.Process.Pid, spec.Name)),
		done:    make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	if err := writePidRecord(p.pidFile, pidRecord{
		Pid:          p.Pid,
		Start:        procStartTime(p.Pid),
		Path:         spec.Path,
		Harness:      os.Getpid(),
		HarnessStart: procStartTime(os.Getpid()),
	}); err != nil {
		p.Stop(0)
		return nil, fmt.Errorf("starting %s: recording its pid: %w", spec.Name, err)
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	s.logger.Info("started", "process", spec.Name, "pid", p.Pid, "log", logFile)
	return p, nil
}

// Processes returns the processes started so far, in start order.
func (s *Supervisor) Processes() []*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Process(nil), s.procs...)
}

// StopAll stops every process, the most recently started first. Each gets
// grace to exit after SIGTERM.
func (s *Supervisor) StopAll(grace time.Duration) {
	procs := s.Processes()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(grace)
		s.logger.Info("stopped", "process", procs[i].Name, "pid", procs[i].Pid)
	}
}

// pidRecord is what a pid file holds. Start times (clock ticks since boot,
// field 22 of /proc/PID/stat) tell a live process from a reused pid.
type pidRecord struct {
	Pid          int    `json:"pid"`
	Start        uint64 `json:"start"`
	Path         string `json:"path"`
	Harness      int    `json:"harness"`
	HarnessStart uint64 `json:"harnessStart"`
}

func writePidRecord(path string, r pidRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// SweepStale kills the process groups recorded in pidDir whose harness is no
// longer running (a previous run that was killed before it could clean up),
// removes their pid files, and returns the names of the pid files it acted
// on. Records of live harnesses (concurrent runs) are left alone.
func SweepStale(pidDir string) ([]string, error) {
	entries, err := os.ReadDir(pidDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweeping stale processes: %w", err)
	}
	var swept []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(pidDir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var r pidRecord
		if err := json.Unmarshal(b, &r); err != nil || r.Pid <= 0 {
			_ = os.Remove(path)
			swept = append(swept, e.Name())
			continue
		}
		if r.Harness > 0 && procStartTime(r.Harness) == r.HarnessStart && r.HarnessStart != 0 {
			continue // its harness is alive: a concurrent run
		}
		if st := procStartTime(r.Pid); st != 0 && st == r.Start {
			killGroup(r.Pid, syscall.SIGKILL)
			_ = syscall.Kill(r.Pid, syscall.SIGKILL)
		}
		_ = os.Remove(path)
		swept = append(swept, e.Name())
	}
	return swept, nil
}

// procStartTime returns the start time of pid in clock ticks since boot, or 0
// when the process does not exist.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is parenthesised and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); the start time is field 22.
	if len(fields) < 20 {
		return 0
	}
	v, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return 0
	}
	return v
}

// tailFile returns up to max bytes from the end of path.
func tailFile(path string, max int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	off := st.Size() - int64(max)
	if off < 0 {
		off = 0
	}
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	return string(b)
}

// waitUntil polls check every interval until it returns true, returns an
// error, ctx ends, or one of the processes exits.
func waitUntil(ctx context.Context, interval time.Duration, what string, check func(context.Context) (bool, error), watch ...*Process) error {
	var lastErr error
	for {
		ok, err := check(ctx)
		if ok {
			return nil
		}
		lastErr = err
		for _, p := range watch {
			if !p.Running() {
				return fmt.Errorf("waiting for %s: %s exited (%v); log tail:\n%s", what, p.Name, p.Err(), p.Tail(4000))
			}
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
