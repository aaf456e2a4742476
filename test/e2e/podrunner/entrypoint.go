package podrunner

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// TektonEntrypoint is the program Tekton makes every step container run; it
// receives the step's real command after its own flags and "--".
const TektonEntrypoint = "/tekton/bin/entrypoint"

// Invocation is a step container's command line as Tekton's controller
// rendered it for its entrypoint program, parsed with the entrypoint's own
// flag definitions (github.com/tektoncd/pipeline/cmd/entrypoint).
type Invocation struct {
	// Command is the step's program and arguments: the -entrypoint flag's
	// value followed by everything after "--".
	Command []string
	// WaitFiles must exist (with content, when WaitFileContent) before the
	// step starts; a sibling "<file>.err" means a previous step failed.
	WaitFiles       []string
	WaitFileContent bool
	// PostFile is written when the step ends ("<file>.err" on failure).
	PostFile string
	// TerminationPath receives the termination message.
	TerminationPath string
	// StepMetadataDir receives the exit code and step results.
	StepMetadataDir string
	// Results are the Task results the step may write under /tekton/results.
	Results []string
	// StepResults are the step's own results under StepMetadataDir/results.
	StepResults []string
	// Timeout bounds the step (0: none).
	Timeout time.Duration
	// OnError is "continue" or "stopAndFail" (or empty).
	OnError string
	// StdoutPath and StderrPath, when set, receive copies of the output.
	StdoutPath, StderrPath string
	// ResultFrom is where the controller reads results: only
	// "termination-message" is supported.
	ResultFrom string
	// CompressTerminationMessage asks for a flate-compressed message.
	CompressTerminationMessage bool
	// WhenExpressions is the step's when expressions (JSON), evaluated
	// before the step runs as Tekton's entrypoint does.
	WhenExpressions string
	// Unsupported lists the flags that were set but that the pod runner
	// cannot honour faithfully (credentials, debugging, SPIRE, step when
	// expressions): a step using them fails loudly.
	Unsupported []string
}

// ErrNotEntrypoint is returned by ParseInvocation for a container whose
// command is not Tekton's entrypoint (a sidecar or a plain container).
var ErrNotEntrypoint = errors.New("the container does not run Tekton's entrypoint")

// ParseInvocation parses a step container's command and args.
func ParseInvocation(command, args []string) (*Invocation, error) {
	if len(command) != 1 || command[0] != TektonEntrypoint {
		return nil, ErrNotEntrypoint
	}
	// Tekton's entrypoint splits its arguments at the first "--" (unless
	// it comes first): flags before, the step's arguments after.
	flagArgs, stepArgs := args, []string(nil)
	for i, a := range args {
		if a == "--" {
			if i > 0 {
				flagArgs, stepArgs = args[:i], args[i+1:]
			}
			break
		}
	}
	inv := &Invocation{}
	fs := flag.NewFlagSet("entrypoint", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		ep, waitFiles, results, stepResults string
	)
	fs.StringVar(&ep, "entrypoint", "", "")
	fs.StringVar(&waitFiles, "wait_file", "", "")
	fs.BoolVar(&inv.WaitFileContent, "wait_file_content", false, "")
	fs.StringVar(&inv.PostFile, "post_file", "", "")
	fs.StringVar(&inv.TerminationPath, "termination_path", "/tekton/termination", "")
	fs.StringVar(&results, "results", "", "")
	fs.StringVar(&stepResults, "step_results", "", "")
	fs.DurationVar(&inv.Timeout, "timeout", 0, "")
	fs.StringVar(&inv.StdoutPath, "stdout_path", "", "")
	fs.StringVar(&inv.StderrPath, "stderr_path", "", "")
	fs.StringVar(&inv.OnError, "on_error", "", "")
	fs.StringVar(&inv.StepMetadataDir, "step_metadata_dir", "", "")
	fs.StringVar(&inv.ResultFrom, "result_from", "termination-message", "")
	fs.BoolVar(&inv.CompressTerminationMessage, "compress_termination_message", false, "")
	// Flags the runner recognises but cannot honour.
	unsupported := map[string]*string{}
	fs.StringVar(&inv.WhenExpressions, "when_expressions", "", "")
	for _, name := range []string{"basic-docker", "docker-config", "docker-cfg", "basic-git", "ssh-git"} {
		unsupported[name] = fs.String(name, "", "")
	}
	unsupportedBool := map[string]*bool{}
	for _, name := range []string{"breakpoint_on_failure", "debug_before_step", "enable_spire"} {
		unsupportedBool[name] = fs.Bool(name, false, "")
	}
	if err := fs.Parse(flagArgs); err != nil {
		return nil, fmt.Errorf("parsing the entrypoint flags %q: %w", flagArgs, err)
	}
	if fs.NArg() > 0 {
		// Tekton's entrypoint treats leftover words as a subcommand (init,
		// cp, decode-script, step-init); steps never use them.
		return nil, fmt.Errorf("parsing the entrypoint flags: unexpected subcommand %q", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if _, ok := unsupported[f.Name]; ok {
			inv.Unsupported = append(inv.Unsupported, "-"+f.Name)
		}
		if _, ok := unsupportedBool[f.Name]; ok {
			inv.Unsupported = append(inv.Unsupported, "-"+f.Name)
		}
	})
	if ep == "" {
		// Without -entrypoint, Tekton's entrypoint reads per-platform
		// commands from TEKTON_PLATFORM_COMMANDS (steps without a command
		// whose image the controller looked up).
		inv.Unsupported = append(inv.Unsupported, "no -entrypoint (image entrypoint lookup)")
	} else {
		inv.Command = append([]string{ep}, stepArgs...)
	}
	inv.WaitFiles = splitList(waitFiles)
	inv.Results = splitList(results)
	inv.StepResults = splitList(stepResults)
	if inv.ResultFrom != "termination-message" {
		inv.Unsupported = append(inv.Unsupported, "-result_from="+inv.ResultFrom)
	}
	return inv, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}
