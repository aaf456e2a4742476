// Package engine is ciel's one evaluator: it turns a GitLab webhook into a
// decision (continue or not) and the values a Trigger's bindings read.
//
// The ClusterInterceptor service and the cel-eval command both run it, so
// a rule tested offline behaves exactly as it will in the cluster.
//
//	eng, err := engine.New()
//	prog, err := eng.Compile(engine.Rules{Filter: `extensions.changed_files.all.matchesAny(["src/**"])`})
//	dec, err := eng.Evaluate(ctx, prog, engine.Input{Body: body, Header: header})
//	if dec.Continue { ... dec.Extensions ... }
//
// An evaluation decodes the body once (interceptor/gitlab: bounded size and
// depth), computes extensions.push and extensions.changed_files for pushes
// and tag pushes, extensions.merge_request and (only when the outcome
// depends on them, mergerequest.go) extensions.changed_files for merge
// requests (docs/extensions.md), then evaluates the filter and, when
// it holds, the overlays, as Tekton Triggers' CEL interceptor does, in the
// environment of interceptor/celenv. Programs are compiled once and kept in
// a bounded cache keyed by expression; every evaluation is bounded by a CEL
// cost limit and a deadline.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/interpreter"
	"github.com/tidwall/sjson"

	"github.com/ciel-ci/ciel/interceptor/celenv"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/internal/logopt"
	"github.com/ciel-ci/ciel/internal/option"
)

const (
	// DefaultCostLimit bounds the CEL cost of one evaluation (filter,
	// overlays and value together count separately, each against this
	// limit). A cost unit is roughly one simple operation; ciel's and
	// Triggers' functions report costs proportional to their input. The
	// blog posts' changed-files regex filter costs about 30 per changed
	// path, so the default admits pushes of 100,000 paths while stopping a
	// runaway expression within milliseconds.
	DefaultCostLimit = 10_000_000
	// DefaultTimeout bounds the wall time of one evaluation.
	DefaultTimeout = time.Second
	// DefaultCacheSize is how many compiled expressions are kept.
	DefaultCacheSize = 1024
	// interruptCheckFrequency is how many comprehension iterations run
	// between two checks of the context.
	interruptCheckFrequency = 100
)

// Engine compiles and evaluates rules. It is safe for concurrent use:
// build it once and share it.
type Engine struct {
	env       *cel.Env
	typedEnv  *cel.Env
	decoder   *gitlab.Decoder
	shared    *gitlab.Decoder // decoder's SharedBody, for Input.SharedBody
	costLimit uint64
	maxEst    uint64
	timeout   time.Duration
	maxBytes  uint64
	costProof bool
	cache     *programCache
	logger    *slog.Logger

	resultsOnce sync.Once
	results     map[string]types.Kind // overload ID → result kind (pathproof.go)
	// onUntracked, for tests, sees each expression run untracked with the
	// estimate that proved it.
	onUntracked func(c *compiled, est uint64)
	// noFastPath, for tests and benchmarks, sends every filter to cel-go.
	noFastPath bool
	// onFastPath, for tests, sees each fast-path evaluation: ok is false
	// when it gave the request back to cel-go.
	onFastPath func(ok bool)
}

type options struct {
	costLimit  uint64
	maxEst     uint64
	timeout    time.Duration
	cacheSize  int
	secrets    celenv.SecretGetter
	decoder    *gitlab.Decoder
	maxBytes   int
	maxBytesOK bool // WithMaxBodyBytes was given
	logger     *slog.Logger
	envOptions []celenv.Option
	costProof  bool
}

// Option configures New.
type Option func(*options) error

// WithCostLimit sets the CEL cost limit of each expression's evaluation.
// Default: DefaultCostLimit. n must be positive.
func WithCostLimit(n uint64) Option {
	return option.Check(n > 0, "cost limit must be positive", func(o *options) { o.costLimit = n })
}

// WithMaxEstimatedCost rejects, at compile time, expressions whose
// worst-case estimated cost exceeds n, assuming every list, map and string
// of the request may be as large as the body limit allows; the error names
// the sub-expression that carries most of the estimate. Default: 0, off:
// no expression is rejected for its estimate (an estimate is no lower
// bound), and the cost limit and the deadline bound each evaluation.
func WithMaxEstimatedCost(n uint64) Option {
	return option.Always(func(o *options) { o.maxEst = n })
}

// WithCostProof lets an expression run without runtime cost tracking on a
// request where the checker's cost estimate, with every list, map and
// string as large as the request's largest, proves it within the cost
// limit (see costproof.go). The limit holds as before; only the work of
// counting is saved. Decision.Cost then counts the tracked expressions
// only, so tools that show costs (cel-eval) leave this off. Default: off.
func WithCostProof() Option {
	return option.Always(func(o *options) { o.costProof = true })
}

// WithTimeout sets the deadline of one evaluation (filter, overlays and
// value together), on top of the caller's context. Default:
// DefaultTimeout. d must be positive.
func WithTimeout(d time.Duration) Option {
	return option.Check(d > 0, fmt.Sprintf("timeout must be positive, got %s", d), func(o *options) { o.timeout = d })
}

// WithCacheSize sets how many compiled expressions are kept (least
// recently used first out). Default: DefaultCacheSize. n must be positive.
func WithCacheSize(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("cache size must be positive, got %d", n), func(o *options) { o.cacheSize = n })
}

// WithSecretGetter sets where compareSecret reads Secrets (the trigger's
// namespace is Input.Namespace). Default: none; compareSecret then
// evaluates to an error saying so.
func WithSecretGetter(g celenv.SecretGetter) Option {
	return option.Check(g != nil, "secret getter is nil", func(o *options) { o.secrets = g })
}

// WithDecoder sets how bodies are decoded (size and depth limits).
// Default: gitlab.NewDecoder() (25 MiB, depth 64). The decoder carries its
// own body limit: WithMaxBodyBytes beside it is an error.
func WithDecoder(d *gitlab.Decoder) Option {
	return option.Check(d != nil, "decoder is nil", func(o *options) { o.decoder = d })
}

// WithMaxBodyBytes sets the largest body accepted, in bytes. Default:
// gitlab.DefaultMaxBytes. It conflicts with WithDecoder (whose decoder has
// its own limit): giving both is an error.
func WithMaxBodyBytes(n int) Option {
	return option.Check(n > 0, fmt.Sprintf("body limit must be positive, got %d", n), func(o *options) { o.maxBytes, o.maxBytesOK = n, true })
}

// WithLogger sets where the engine logs (compilations, cache evictions).
// Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { return logopt.Set(&o.logger, l) }
}

// WithEnvOptions passes options to celenv.New for both the ordinary and
// the typed environment (more functions, a pattern cache size).
func WithEnvOptions(opts ...celenv.Option) Option {
	return option.Always(func(o *options) { o.envOptions = append(o.envOptions, opts...) })
}

// New builds an engine: both CEL environments, the decoder and the program
// cache.
func New(opts ...Option) (*Engine, error) {
	o := options{
		costLimit: DefaultCostLimit,
		timeout:   DefaultTimeout,
		cacheSize: DefaultCacheSize,
		maxBytes:  gitlab.DefaultMaxBytes,
		logger:    logopt.Discard(),
	}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("configuring the engine: %w", err)
		}
	}
	if o.decoder != nil && o.maxBytesOK {
		return nil, errors.New("configuring the engine: WithDecoder and WithMaxBodyBytes conflict: the decoder has its own body limit; give gitlab.WithMaxBytes to the decoder instead")
	}
	if o.decoder == nil {
		d, err := gitlab.NewDecoder(gitlab.WithMaxBytes(o.maxBytes))
		if err != nil {
			return nil, fmt.Errorf("configuring the engine: %w", err)
		}
		o.decoder = d
	}
	envOpts := append([]celenv.Option(nil), o.envOptions...)
	if o.secrets != nil {
		envOpts = append(envOpts, celenv.WithSecretGetter(o.secrets))
	}
	env, err := celenv.New(envOpts...)
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	typedOpts, bodyType, extType, err := typedEnvOptions(env)
	if err != nil {
		return nil, err
	}
	typedEnv, err := celenv.New(append(envOpts,
		celenv.WithBodyType(bodyType),
		celenv.WithExtensionsType(extType),
		celenv.WithEnvOptions(typedOpts...))...)
	if err != nil {
		return nil, fmt.Errorf("building the typed CEL environment: %w", err)
	}
	return &Engine{
		env:       env,
		typedEnv:  typedEnv,
		decoder:   o.decoder,
		shared:    o.decoder.SharedBody(),
		costLimit: o.costLimit,
		maxEst:    o.maxEst,
		timeout:   o.timeout,
		maxBytes:  uint64(o.maxBytes),
		costProof: o.costProof,
		cache:     newProgramCache(o.cacheSize),
		logger:    o.logger,
	}, nil
}

// Env returns the ordinary CEL environment (for tools that list its
// variables and functions).
func (e *Engine) Env() *cel.Env { return e.env }

// CostLimit returns the cost limit of one expression's evaluation.
func (e *Engine) CostLimit() uint64 { return e.costLimit }

// Input is one webhook to decide on.
type Input struct {
	// Body is the raw request body. Ignored when Event is set.
	Body []byte
	// SharedBody is the caller's promise that Body is never written again
	// while the Event or the Decision (or any value taken from them) is
	// reachable: the decoder then keeps strings pointing into Body instead
	// of copying it (gitlab.WithSharedBody). The interceptor's server sets
	// it: each request has a buffer of its own. Default false: Body is
	// copied once and the caller may reuse it after the call.
	SharedBody bool
	// Header is the request header; X-Gitlab-Event names the event.
	Header http.Header
	// RequestURL is the URL of the request (requestURL in CEL).
	RequestURL string
	// Extensions are what earlier interceptors added. They are visible to
	// the expressions, next to push and changed_files, and not returned.
	Extensions map[string]any
	// Namespace is the trigger's namespace: compareSecret reads there.
	Namespace string
	// ChangedFiles computes extensions.changed_files of a push. Default:
	// gitlab.PayloadSource{} (the payload only, no network). For a merge
	// request event it must also implement gitlab.MergeRequestFilesSource
	// (gitlabapi.Source, gitlab.FixedSource do); otherwise the MR's changed
	// files are unknown (gitlab.UnknownChangedFiles).
	ChangedFiles gitlab.ChangedFilesSource
	// Event is the already decoded body, from Engine.Decode.
	Event *gitlab.Event
	// DeferExtensions is the caller's promise that it reads
	// Decision.Push, ChangedFiles and Extensions only when Continue is
	// true, and that its ChangedFiles source does no I/O and cannot fail
	// (gitlab.PayloadSource). When no expression of the program names
	// extensions, a push's extensions.push and extensions.changed_files
	// are then computed only for a decision that continues: a push the
	// filter rejects costs no push facts and no changed files. The
	// interceptor's server sets it when it decides on the payload alone.
	// Default false: they are computed for every push, before the filter.
	DeferExtensions bool

	// mr is a merge request event's changed files across the passes of
	// evaluateMergeRequest.
	mr *mrFiles
}

// Decode decodes in.Body as the event named by in.Header's X-Gitlab-Event,
// within the engine's limits. Errors are of KindInput.
func (e *Engine) Decode(in Input) (*gitlab.Event, error) {
	ev, err := e.decoderFor(in).Decode(in.Header.Get("X-Gitlab-Event"), in.Body)
	if err != nil {
		return nil, &Error{Kind: KindInput, Where: "body", Err: err}
	}
	return ev, nil
}

// decoderFor is the decoder for in's body: the sharing one when the caller
// promises the body is never written again (Input.SharedBody).
func (e *Engine) decoderFor(in Input) *gitlab.Decoder {
	if in.SharedBody {
		return e.shared
	}
	return e.decoder
}

// OverlayValue is the value of one overlay.
type OverlayValue struct {
	Key string `json:"key"`
	// Value is JSON decoded into Go (maps, []any, float64, string, bool).
	Value any `json:"value"`
	// JSON is the value as Triggers renders it into the extensions.
	JSON json.RawMessage `json:"-"`
}

// Decision is the outcome of an evaluation.
type Decision struct {
	// Continue is the filter's value; true when there is no filter.
	Continue bool
	// Event is the decoded webhook.
	Event *gitlab.Event
	// Push is extensions.push; nil unless the event is a push or tag push.
	Push map[string]any
	// MergeRequest is extensions.merge_request; nil unless the event is a
	// merge request.
	MergeRequest map[string]any
	// ChangedFiles is extensions.changed_files; nil unless the event is a
	// push or tag push, or a merge request whose files were fetched.
	ChangedFiles *gitlab.ChangedFiles
	// Overlays are the overlays' values in the order of the rules; empty
	// when the filter is false (overlays are not evaluated then).
	Overlays []OverlayValue
	// Value is the result of Rules.Value rendered as JSON; nil without one.
	Value json.RawMessage
	// Extensions is what the interceptor returns to the EventListener:
	// push and changed_files (for pushes) with the overlays written over
	// them by key path, as Triggers writes overlays.
	Extensions map[string]any
	// Cost is the CEL cost of the evaluation, all expressions together;
	// with WithCostProof, of those that ran tracked.
	Cost uint64
}

// Evaluate decides on one webhook with the compiled rules p.
//
// A false filter is not an error: Continue is false. Errors are *Error or
// *CompileError; KindOf tells them apart.
func (e *Engine) Evaluate(ctx context.Context, p *Program, in Input) (d *Decision, err error) {
	if p == nil {
		return nil, &Error{Kind: KindInternal, Err: errors.New("evaluating: nil program")}
	}
	defer func() {
		if r := recover(); r != nil {
			d, err = nil, &Error{Kind: KindInternal, Err: fmt.Errorf("evaluating: panic: %v", r)}
		}
	}()
	ev, bodySize := in.Event, -1
	if ev == nil {
		if ev, bodySize, err = e.decoderFor(in).DecodeSized(in.Header.Get("X-Gitlab-Event"), in.Body); err != nil {
			return nil, &Error{Kind: KindInput, Where: "body", Err: err}
		}
	}
	if ev.MergeRequest != nil && in.mr == nil {
		return e.evaluateMergeRequest(ctx, p, in, ev)
	}
	d = &Decision{Event: ev}

	exts := make(map[string]any, len(in.Extensions)+2)
	for k, v := range in.Extensions {
		exts[k] = v
	}
	var own map[string]any
	deferred := ev.Push != nil && in.DeferExtensions && !p.readsExtensions()
	if ev.Push != nil && !deferred {
		if own, err = pushExtensions(ctx, in, ev.Push, exts, d); err != nil {
			return nil, err
		}
	}
	if in.mr != nil {
		own = in.mr.extensions(exts, d)
	}

	header := in.Header
	if header == nil {
		header = http.Header{}
	}
	req := &request{body: tree(ev), ev: ev, header: header, extensions: exts, requestURL: in.RequestURL, size: sizeUnknown,
		parent: ctx, namespace: in.Namespace, costLimit: e.costLimit, deadline: time.Now().Add(e.timeout)}
	defer req.stop()
	if e.costProof {
		if lim := e.maxProofSize(p); lim > 0 {
			req.size = requestSize(lim, ev, bodySize, header, exts, in.RequestURL)
		}
	}

	d.Continue = true
	if p.filter != nil {
		v, err := e.eval(p.filter, d, req)
		if err != nil {
			return nil, &Error{Kind: KindOf(err), Where: "filter", Err: errors.Unwrap(err)}
		}
		b, ok := v.(types.Bool)
		if !ok {
			return nil, &Error{Kind: KindEval, Where: "filter",
				Err: fmt.Errorf("a filter must be a bool, got %s %s", v.Type().TypeName(), renderForError(v))}
		}
		d.Continue = bool(b)
	}
	if deferred && d.Continue {
		// No expression reads them: computed now for the caller only.
		if own, err = pushExtensions(ctx, in, ev.Push, exts, d); err != nil {
			return nil, err
		}
	}

	if d.Continue && len(p.overlays) > 0 {
		doc := []byte("{}")
		if own != nil {
			if doc, err = json.Marshal(own); err != nil {
				return nil, &Error{Kind: KindInternal, Err: fmt.Errorf("rendering extensions: %w", err)}
			}
		}
		d.Overlays = make([]OverlayValue, 0, len(p.overlays))
		for _, o := range p.overlays {
			where := "overlays[" + o.key + "]"
			v, err := e.eval(o.prog, d, req)
			if err != nil {
				return nil, &Error{Kind: KindOf(err), Where: where, Err: errors.Unwrap(err)}
			}
			raw, err := celenv.ValueJSON(v)
			if err != nil {
				return nil, &Error{Kind: KindEval, Where: where, Err: err}
			}
			var val any
			if err := json.Unmarshal(raw, &val); err != nil {
				return nil, &Error{Kind: KindInternal, Where: where, Err: fmt.Errorf("reading the rendered value: %w", err)}
			}
			d.Overlays = append(d.Overlays, OverlayValue{Key: o.key, Value: val, JSON: raw})
			if doc, err = sjson.SetRawBytes(doc, o.key, raw); err != nil {
				return nil, &Error{Kind: KindEval, Where: where, Err: fmt.Errorf("writing the value at key path %q: %w", o.key, err)}
			}
		}
		ext := map[string]any{}
		if err := json.Unmarshal(doc, &ext); err != nil {
			return nil, &Error{Kind: KindInternal, Err: fmt.Errorf("reading the extensions: %w", err)}
		}
		d.Extensions = ext
	} else if own != nil {
		d.Extensions = own
	}

	if p.value != nil {
		v, err := e.eval(p.value, d, req)
		if err != nil {
			return nil, &Error{Kind: KindOf(err), Where: "value", Err: errors.Unwrap(err)}
		}
		raw, err := celenv.ValueJSON(v)
		if err != nil {
			return nil, &Error{Kind: KindEval, Where: "value", Err: err}
		}
		d.Value = raw
	}
	return d, nil
}

// pushExtensions computes a push's extensions.push and
// extensions.changed_files into exts and d, and returns them as the
// extensions the interceptor returns.
func pushExtensions(ctx context.Context, in Input, push *gitlab.PushEvent, exts map[string]any, d *Decision) (map[string]any, error) {
	src := in.ChangedFiles
	if src == nil {
		src = gitlab.PayloadSource{}
	}
	cf, err := src.ChangedFiles(ctx, push)
	if err != nil {
		return nil, &Error{Kind: KindChangedFiles, Where: "changed files", Err: err}
	}
	d.ChangedFiles = &cf
	d.Push = push.Facts().Map()
	cfMap := cf.Map()
	exts["push"] = d.Push
	exts["changed_files"] = cfMap
	return map[string]any{"push": d.Push, "changed_files": cfMap}, nil
}

// eval runs one program and classifies its error. req is what the cost
// proof measures of the request.
func (e *Engine) eval(c *compiled, d *Decision, req *request) (ref.Val, error) {
	prog := c.prog
	if free, est := e.untracked(c, req); free != nil {
		prog = free
		if e.onUntracked != nil {
			e.onUntracked(c, est)
		}
		// Proven within the cost limit: the fast path may decide, or
		// give the request back to cel-go (fastpath.go).
		if c.fast != nil && !e.noFastPath {
			b, ok := c.fast.eval(req)
			if e.onFastPath != nil {
				e.onFastPath(ok)
			}
			if ok {
				return types.Bool(b), nil
			}
		}
	}
	ctx := req.evalContext()
	if req.act == nil {
		act, err := celenv.NewActivation(ctx, req)
		if err != nil {
			return nil, &Error{Kind: KindInternal, Err: err}
		}
		req.act = act
	}
	v, det, err := prog.ContextEval(ctx, req.act)
	if det != nil {
		if cost := det.ActualCost(); cost != nil {
			d.Cost += *cost
		}
	}
	if err == nil {
		return v, nil
	}
	var cancelled interpreter.EvalCancelledError
	if errors.As(err, &cancelled) {
		if cancelled.Cause == interpreter.CostLimitExceeded {
			return nil, &Error{Kind: KindLimit, Err: fmt.Errorf("cost limit of %d exceeded: the expression does too much work for this payload", e.costLimit)}
		}
		cause := ctx.Err()
		if errors.Is(cause, context.DeadlineExceeded) {
			return nil, &Error{Kind: KindLimit, Err: fmt.Errorf("evaluation deadline exceeded (at most %s per evaluation): %w", e.timeout, cause)}
		}
		return nil, &Error{Kind: KindLimit, Err: fmt.Errorf("evaluation cancelled: %w", cause)}
	}
	if ctx.Err() != nil {
		return nil, &Error{Kind: KindLimit, Err: fmt.Errorf("evaluation stopped: %w", ctx.Err())}
	}
	return nil, &Error{Kind: KindEval, Err: err}
}

// renderForError shows a value in an error message, shortened.
func renderForError(v ref.Val) string {
	s := fmt.Sprint(v.Value())
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return fmt.Sprintf("(%s)", s)
}

// ResolveName resolves the four variables of an expression without
// building a map per request: the request is the activation cel-go reads.
func (r *request) ResolveName(name string) (any, bool) {
	switch name {
	case celenv.VarBody:
		if r.ev == nil {
			return map[string]any(nil), true
		}
		return r.ev.Body(), true
	case celenv.VarHeader:
		return r.header, true
	case celenv.VarExtensions:
		return r.extensions, true
	case celenv.VarRequestURL:
		return r.requestURL, true
	}
	return nil, false
}

func (r *request) Parent() interpreter.Activation { return nil }

var _ interpreter.Activation = (*request)(nil)

// tree is ev's body as the proofs and the fast path read it: its decoded
// tree, without the maps Body builds (nil as a map when there is none, so
// that "body" is a map either way).
func tree(ev *gitlab.Event) any {
	if t := ev.Tree(); t != nil {
		return t
	}
	return ev.Body()
}

// evalContext is the context cel-go evaluates with: the caller's, with the
// trigger's namespace and the cost limit for celenv's functions, and the
// evaluation's deadline. Built by the first evaluation that needs cel-go:
// the fast path checks the deadline itself (fastFrame.interrupted).
func (r *request) evalContext() context.Context {
	if r.ctx == nil {
		ctx := celenv.WithCostLimit(celenv.WithNamespace(r.parent, r.namespace), r.costLimit)
		r.ctx, r.cancel = context.WithDeadline(ctx, r.deadline)
	}
	return r.ctx
}

// stop releases the evaluation context's timer, if one was made.
func (r *request) stop() {
	if r.cancel != nil {
		r.cancel()
	}
}
