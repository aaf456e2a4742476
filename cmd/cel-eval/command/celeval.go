// Package command is the cel-eval command: CEL expressions and ciel
// policies evaluated offline against GitLab webhook files, with exactly the
// engine the ClusterInterceptor runs (interceptor/engine).
package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ciel-ci/ciel/internal/exitcode"
	"github.com/ciel-ci/ciel/internal/version"
	"github.com/spf13/cobra"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/interceptor/secrets"
)

// Exit codes.
const (
	ExitTrue  = exitcode.OK // the expression is true, or every test passed
	ExitFalse = 1           // the expression is false, or a test failed
	ExitError = 2           // anything else: bad flags, unreadable files, bad expressions
)

// ExitCode maps RunE's error to the process exit code.
func ExitCode(err error) int { return exitcode.Code(err, ExitError) }

// Silent reports whether err was already reported on the output (a false
// decision or a failed test): main prints nothing more.
func Silent(err error) bool { return exitcode.Silent(err) }

type flags struct {
	exprFile   string
	expr       string
	request    string
	body       string
	headers    []string
	files      []string
	filesSet   bool
	policy     string
	output     string
	typed      bool
	secretDir  string
	namespace  string
	url        string
	costLimit  uint64
	timeout    time.Duration
	maxBody    int
	extensions string
}

// NewCommand returns the cel-eval root command.
func NewCommand() *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Version: version.String(),
		Use:     "cel-eval (-e FILE | --expr EXPR | --policy FILE) (-r REQUEST | --body FILE) [flags]",
		Short:   "Evaluate CEL rules against GitLab webhooks, exactly as the ciel interceptor does",
		Long: `cel-eval evaluates a CEL expression or a ciel policy against a GitLab webhook
read from a file, with the engine the ciel ClusterInterceptor runs: the same
variables (body, header, extensions, requestURL), Tekton Triggers' functions,
ciel's glob functions, and extensions.push / extensions.merge_request /
extensions.changed_files computed from the payload (--files overrides the
changed files; a merge request's changed files, which only the GitLab API
knows, are unknown without --files: empty, truncated, source "none").

The value is printed on stdout's first line: true or false, or the JSON value
of a non-bool expression; then the decision's details. -o json prints one
JSON document on one line instead.

Exit codes: 0 the expression (or policy filter) is true, or a non-bool value
was printed; 1 it is false; 2 any error (bad expression, unreadable or invalid
payload, bad flags).

Tekton's cel-eval form works unchanged: cel-eval -e expression.txt -r request.txt`,
		Example: `  cel-eval --policy policies/build-on-change.yaml -r policies/testdata/push-src.http
  cel-eval --expr 'extensions.changed_files.all.matchesAny(["src/**"])' --body push.json -H 'X-Gitlab-Event: Push Hook'
  cel-eval --policy policies/build-mr-on-change.yaml -r policies/testdata/mr-open.http --files src/refunds.go
  cel-eval -e filter.cel -r request.http --files src/main.go,README.md -o json
  cel-eval test policies/`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.filesSet = cmd.Flags().Changed("files")
			return f.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitcode.New(ExitError, err) })
	fl := cmd.Flags()
	fl.StringVarP(&f.exprFile, "expression", "e", "", "file holding the CEL expression (Tekton cel-eval's -e)")
	fl.StringVar(&f.expr, "expr", "", "the CEL expression, inline")
	fl.StringVarP(&f.request, "request", "r", "", "raw HTTP request file: request line, headers, blank line, JSON body (Tekton cel-eval's -r)")
	fl.StringVar(&f.body, "body", "", "JSON body file (headers from -H)")
	fl.StringArrayVarP(&f.headers, "header", "H", nil, "request header 'Name: value' (repeatable; added to -r's)")
	fl.StringSliceVar(&f.files, "files", nil, "override the changed files of a push or merge request: a,b,c (source \"override\")")
	fl.StringVar(&f.policy, "policy", "", "policy file: evaluate its eventTypes, filter and overlays")
	fl.StringVarP(&f.output, "output", "o", "text", "output: text or json")
	fl.BoolVar(&f.typed, "typed", false, "type-check against the GitLab push, tag push and merge request shapes (body.comits is an error)")
	fl.StringVar(&f.secretDir, "secret-dir", "", "directory of Secrets for compareSecret: DIR/NAME/KEY files")
	fl.StringVar(&f.namespace, "namespace", "default", "the trigger's namespace (compareSecret)")
	fl.StringVar(&f.url, "url", "", "requestURL (default: from -r's request line and Host, else http://localhost/)")
	fl.StringVar(&f.extensions, "extensions", "", "JSON file of extensions added by earlier interceptors")
	fl.Uint64Var(&f.costLimit, "cost-limit", engine.DefaultCostLimit, "CEL cost limit of one evaluation")
	fl.DurationVar(&f.timeout, "timeout", engine.DefaultTimeout, "time limit of one evaluation")
	fl.IntVar(&f.maxBody, "max-body-bytes", gitlab.DefaultMaxBytes, "largest body accepted")
	cmd.AddCommand(newTestCommand())
	return cmd
}

func usage(format string, args ...any) error {
	return exitcode.New(ExitError, fmt.Errorf(format, args...))
}

func (f *flags) engine() (*engine.Engine, error) {
	opts := []engine.Option{engine.WithCostLimit(f.costLimit), engine.WithTimeout(f.timeout), engine.WithMaxBodyBytes(f.maxBody)}
	if f.secretDir != "" {
		opts = append(opts, engine.WithSecretGetter(secrets.Dir(f.secretDir)))
	}
	return engine.New(opts...)
}

func (f *flags) input() (engine.Input, error) {
	in := engine.Input{Header: http.Header{}, RequestURL: "http://localhost/", Namespace: f.namespace}
	switch {
	case f.request != "" && f.body != "":
		return in, usage("give -r or --body, not both")
	case f.request == "" && f.body == "":
		return in, usage("give the webhook: -r REQUEST_FILE or --body JSON_FILE")
	}
	if err := policy.ReadWebhook(&in, f.request, f.body); err != nil {
		return in, err
	}
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return in, usage("header %q: want 'Name: value'", h)
		}
		in.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if f.url != "" {
		in.RequestURL = f.url
	}
	if f.filesSet {
		in.ChangedFiles = policy.Override(f.files)
	}
	if f.extensions != "" {
		data, err := os.ReadFile(f.extensions)
		if err != nil {
			return in, fmt.Errorf("reading the extensions: %w", err)
		}
		if err := json.Unmarshal(data, &in.Extensions); err != nil {
			return in, fmt.Errorf("%s: the extensions must be a JSON object: %w", f.extensions, err)
		}
	}
	return in, nil
}

// report is cel-eval's output, text or JSON.
type report struct {
	Value        json.RawMessage    `json:"value"`
	Continue     *bool              `json:"continue,omitempty"`
	Reason       string             `json:"reason,omitempty"`
	Policy       string             `json:"policy,omitempty"`
	Event        string             `json:"event,omitempty"`
	Kind         string             `json:"kind,omitempty"`
	Push         map[string]any     `json:"push,omitempty"`
	MergeRequest map[string]any     `json:"merge_request,omitempty"`
	ChangedFiles map[string]any     `json:"changed_files,omitempty"`
	Overlays     map[string]any     `json:"overlays,omitempty"`
	overlayOrder []string           `json:"-"`
	Cost         uint64             `json:"cost"`
	Error        *reportError       `json:"error,omitempty"`
	Errors       []engine.ExprError `json:"compile_errors,omitempty"`
}

type reportError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

func (f *flags) run(ctx context.Context, out io.Writer) error {
	if f.output != "text" && f.output != "json" {
		return usage("-o %q: want text or json", f.output)
	}
	n := 0
	for _, s := range []string{f.exprFile, f.expr, f.policy} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return usage("give exactly one of -e FILE, --expr EXPR, --policy FILE")
	}
	eng, err := f.engine()
	if err != nil {
		return usage("%v", err)
	}
	in, err := f.input()
	if err != nil {
		return f.fail(out, err)
	}

	var (
		d      *engine.Decision
		reason string
		rep    report
	)
	if f.policy != "" {
		p, err := policy.Load(eng, f.policy)
		if err != nil {
			return f.fail(out, err)
		}
		rep.Policy = p.Name
		d, reason, err = p.Decide(ctx, eng, in)
		if err != nil {
			return f.fail(out, err)
		}
		rep.Value = json.RawMessage(fmt.Sprint(d.Continue))
		rep.Continue = &d.Continue
	} else {
		expr := f.expr
		if f.exprFile != "" {
			b, err := os.ReadFile(f.exprFile)
			if err != nil {
				return f.fail(out, fmt.Errorf("reading the expression: %w", err))
			}
			expr = string(b)
		}
		prog, err := eng.Compile(engine.Rules{Value: expr, Typed: f.typed})
		if err != nil {
			return f.fail(out, err)
		}
		d, err = eng.Evaluate(ctx, prog, in)
		if err != nil {
			return f.fail(out, err)
		}
		rep.Value = d.Value
		switch string(d.Value) {
		case "true", "false":
			c := string(d.Value) == "true"
			rep.Continue = &c
			if !c {
				reason = "the expression is false"
			}
		}
	}
	rep.Reason = reason
	if d.Event != nil {
		rep.Event, rep.Kind = d.Event.Type, string(d.Event.Kind)
	}
	rep.Push = d.Push
	rep.MergeRequest = d.MergeRequest
	if d.ChangedFiles != nil {
		rep.ChangedFiles = d.ChangedFiles.Map()
	}
	if len(d.Overlays) > 0 {
		rep.Overlays = map[string]any{}
		for _, o := range d.Overlays {
			rep.Overlays[o.Key] = o.Value
			rep.overlayOrder = append(rep.overlayOrder, o.Key)
		}
	}
	rep.Cost = d.Cost
	if err := f.print(out, &rep, d); err != nil {
		return exitcode.New(ExitError, err)
	}
	if rep.Continue != nil && !*rep.Continue {
		return exitcode.New(ExitFalse, nil)
	}
	return nil
}

// fail reports err (in JSON mode as a document) and exits 2.
func (f *flags) fail(out io.Writer, err error) error {
	var ee *exitcode.Error
	if errors.As(err, &ee) {
		return err
	}
	if f.output == "json" {
		rep := report{Value: json.RawMessage("null"), Error: &reportError{Kind: engine.KindOf(err).String(), Message: err.Error()}}
		var ce *engine.CompileError
		if errors.As(err, &ce) {
			rep.Errors = ce.Errors
		}
		b, _ := json.Marshal(rep)
		fmt.Fprintf(out, "%s\n", b)
		return exitcode.New(ExitError, nil)
	}
	return exitcode.New(ExitError, err)
}

func (f *flags) print(out io.Writer, rep *report, d *engine.Decision) error {
	if f.output == "json" {
		b, err := json.Marshal(rep)
		if err != nil {
			return fmt.Errorf("rendering the report: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", rep.Value)
	if rep.Continue != nil {
		if *rep.Continue {
			b.WriteString("decision: continue (a Trigger would fire)\n")
		} else {
			fmt.Fprintf(&b, "decision: skip: %s\n", rep.Reason)
		}
	}
	if rep.Policy != "" {
		fmt.Fprintf(&b, "policy: %s\n", rep.Policy)
	}
	if rep.Event != "" || rep.Kind != "" {
		fmt.Fprintf(&b, "event: %s (%s)\n", orDash(rep.Event), rep.Kind)
	}
	if d.Push != nil {
		ref := d.Push["branch"]
		if d.Push["is_tag"] == true {
			ref = "tag " + fmt.Sprint(d.Push["tag"])
		}
		fmt.Fprintf(&b, "push: %v at %v (%v)\n", ref, orDash(fmt.Sprint(d.Push["short_sha"])), d.Push["project_path"])
	}
	if mr := d.MergeRequest; mr != nil {
		fmt.Fprintf(&b, "merge request: !%v %v %s -> %s at %v (%s)\n", mr["iid"], mr["action"], mr["source_branch"], mr["target_branch"],
			orDash(shortSHA(mr["sha"])), mergeRequestNotes(mr))
		if d.ChangedFiles == nil {
			b.WriteString("changed files: not fetched (no rule needed them)\n")
		}
	}
	if cf := d.ChangedFiles; cf != nil {
		state := "complete"
		switch {
		case cf.Truncated && d.MergeRequest != nil && cf.Source == gitlab.SourceNone:
			state = "UNKNOWN: only the GitLab API lists a merge request's files (give them with --files)"
		case cf.Truncated:
			state = "TRUNCATED: the payload does not list every change"
		}
		fmt.Fprintf(&b, "changed files: %d, source %s, %s\n", len(cf.All), cf.Source, state)
		mark := map[string]string{}
		for _, p := range cf.Added {
			mark[p] = "A"
		}
		for _, p := range cf.Modified {
			mark[p] = "M"
		}
		for _, p := range cf.Removed {
			mark[p] = "D"
		}
		for _, p := range cf.All {
			fmt.Fprintf(&b, "  %s %s\n", mark[p], p)
		}
	}
	if len(rep.overlayOrder) > 0 {
		b.WriteString("overlays:\n")
		for _, o := range d.Overlays {
			fmt.Fprintf(&b, "  %s: %s\n", o.Key, o.JSON)
		}
	}
	fmt.Fprintf(&b, "cost: %d\n", rep.Cost)
	_, err := io.WriteString(out, b.String())
	return err
}

func shortSHA(v any) string {
	s, _ := v.(string)
	return s[:min(len(s), gitlab.ShortSHALength)]
}

// mergeRequestNotes summarises the flags of extensions.merge_request.
func mergeRequestNotes(mr map[string]any) string {
	var notes []string
	if mr["has_new_commits"] == true {
		notes = append(notes, "new commits")
	} else {
		notes = append(notes, "no new commits")
	}
	if mr["draft"] == true {
		notes = append(notes, "draft")
	}
	if mr["from_fork"] == true {
		notes = append(notes, fmt.Sprintf("from fork project %v", mr["source_project_id"]))
	}
	return strings.Join(notes, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newTestCommand() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [PATH...]",
		Short: "Run the test cases of policy files (default: policies/)",
		Long: `test loads every policy file given (a directory: its *.yaml files) and runs
each policy's test cases through the engine. It prints a line per case and a
summary; it exits 0 when every case passes, 1 when one fails, 2 when a policy
does not load.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"policies"}
			}
			return runTests(cmd.Context(), cmd.OutOrStdout(), args, verbose)
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print each passing case's overlays")
	return cmd
}

func runTests(ctx context.Context, out io.Writer, paths []string, verbose bool) error {
	eng, err := engine.New()
	if err != nil {
		return exitcode.New(ExitError, err)
	}
	var pols []*policy.Policy
	for _, path := range paths {
		st, err := os.Stat(path)
		if err != nil {
			return exitcode.New(ExitError, fmt.Errorf("reading policies: %w", err))
		}
		if st.IsDir() {
			set, err := policy.LoadDir(eng, path)
			if err != nil {
				return exitcode.New(ExitError, err)
			}
			pols = append(pols, set.Policies()...)
			continue
		}
		p, err := policy.Load(eng, path)
		if err != nil {
			return exitcode.New(ExitError, err)
		}
		pols = append(pols, p)
	}
	sort.SliceStable(pols, func(i, j int) bool { return pols[i].Name < pols[j].Name })
	passed, failed, untested := 0, 0, 0
	for _, p := range pols {
		if len(p.Tests) == 0 {
			untested++
			fmt.Fprintf(out, "NONE  %s (%s): no test cases\n", p.Name, filepath.Base(p.File))
		}
		for _, r := range p.RunCases(ctx, eng) {
			if r.Pass {
				passed++
				fmt.Fprintf(out, "PASS  %s: %s\n", r.Policy, r.Case)
				if verbose && r.Decision != nil {
					for _, o := range r.Decision.Overlays {
						fmt.Fprintf(out, "        %s = %s\n", o.Key, o.JSON)
					}
				}
				continue
			}
			failed++
			fmt.Fprintf(out, "FAIL  %s: %s\n        %s\n", r.Policy, r.Case, strings.ReplaceAll(r.Problem, "\n", "\n        "))
		}
	}
	fmt.Fprintf(out, "\n%d policies, %d cases: %d passed, %d failed", len(pols), passed+failed, passed, failed)
	if untested > 0 {
		fmt.Fprintf(out, ", %d policies without cases", untested)
	}
	fmt.Fprintln(out)
	if failed > 0 {
		return exitcode.New(ExitFalse, nil)
	}
	return nil
}
