// Package server is the ciel GitLab ClusterInterceptor: the Tekton Triggers
// interceptor protocol (an InterceptorRequest in, an InterceptorResponse
// out) over HTTP, in front of the engine.
//
// For each request it checks the webhook's token (X-Gitlab-Token, constant
// time) and signature (webhook-signature, when a signing Secret is named),
// the event type, drops duplicate deliveries, computes changed files
// (completing truncated pushes from the GitLab API), and evaluates a
// policy or inline CEL. The response's extensions carry push,
// changed_files and the overlays. Status codes are those Triggers uses:
// InvalidArgument for bad input, tokens and expressions, FailedPrecondition
// for a false filter, a refused event type, a duplicate or a merge request
// from a fork not allowed (mergerequest.go), Unavailable when
// GitLab's API is down (failing closed), Internal for ciel's own bugs.
//
// Each request is read once, into one buffer counted against a budget of
// request bytes in flight (past it: HTTP 503, Unavailable, unread). Only
// the envelope's small parts are decoded before the token is checked; the
// webhook body is then unescaped in place in that buffer and handed to the
// engine without a copy (envelope.go, budget.go; docs/security.md).
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/ciel-ci/ciel/interceptor/dedup"
	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/interceptor/secrets"
	"github.com/ciel-ci/ciel/interceptor/webhook"
	"github.com/ciel-ci/ciel/internal/logopt"
)

const (
	// DefaultMaxRequestBytes bounds an InterceptorRequest: the default
	// webhook body limit plus room for headers and JSON escaping.
	DefaultMaxRequestBytes = 2*DefaultMaxBodyBytes + 1<<20
	// DefaultRequestTimeout bounds the handling of one request, GitLab API
	// calls included.
	DefaultRequestTimeout = 20 * time.Second
)

// ChangedFilesAPI is what the server needs of interceptor/gitlabapi.
type ChangedFilesAPI interface {
	// ChangedFiles returns the payload's list, completed when truncated.
	ChangedFiles(ctx context.Context, e *gitlab.PushEvent) (gitlab.ChangedFiles, error)
	// Compare always asks the API.
	Compare(ctx context.Context, e *gitlab.PushEvent) (gitlab.ChangedFiles, error)
}

// Config is what a Server is built from.
type Config struct {
	Engine   *engine.Engine  // required
	Policies *policy.Store   // optional: the policy param needs it
	Secrets  secrets.Getter  // optional: secretRef and signingSecretRef need it
	API      ChangedFilesAPI // optional: completing changed files needs it
	Dedup    *dedup.Cache    // optional: no dedup without it
	Metrics  *Metrics        // optional
	Logger   *slog.Logger    // optional

	// Commits is optional: the param verifyCommit needs it.
	Commits CommitChecker
	// AllowedHosts are the GitLabs clone URLs may point to when a trigger
	// gives no allowedHosts; empty: any host (the path is still checked).
	AllowedHosts []GitHost

	MaxRequestBytes int64 // default DefaultMaxRequestBytes
	// MaxInFlightBytes bounds the bytes of all requests held at once
	// (default DefaultMaxInFlightBytes); it must leave room for one request
	// of MaxRequestBytes besides what is kept for small requests.
	MaxInFlightBytes int64
	RequestTimeout   time.Duration // default DefaultRequestTimeout
	// SignatureTolerance bounds a signed delivery's age; default
	// webhook.DefaultTolerance.
	SignatureTolerance time.Duration
}

// Server handles interceptor requests. It is an http.Handler.
type Server struct {
	cfg    Config
	logger *slog.Logger
	budget budget
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("building the interceptor: no engine")
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxInFlightBytes <= 0 {
		cfg.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if cfg.MaxInFlightBytes < cfg.MaxRequestBytes+reservedBytes {
		return nil, fmt.Errorf("building the interceptor: the in-flight budget of %d bytes cannot hold one request of %d bytes plus the %d kept for small requests: raise it to at least %d",
			cfg.MaxInFlightBytes, cfg.MaxRequestBytes, reservedBytes, cfg.MaxRequestBytes+reservedBytes)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	return &Server{cfg: cfg, logger: logopt.Or(cfg.Logger), budget: budget{limit: cfg.MaxInFlightBytes}}, nil
}

// ServeHTTP serves the interceptor at /gitlab and /, as Triggers' core
// interceptors are routed by path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var resp *triggersv1.InterceptorResponse
	status := http.StatusOK
	var held int64
	defer func() {
		if p := recover(); p != nil {
			s.logger.Error("panic handling a request", "panic", p, "stack", string(debug.Stack()))
			resp, status = fail(codes.Internal, "internal error in the ciel interceptor (logged); please report it"), http.StatusInternalServerError
		}
		if status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		s.write(w, status, resp)
		// The request's buffer is released only now: the response may
		// hold strings decoded from it.
		s.budget.give(held)
		s.observe(resp, time.Since(start))
		if status >= 400 && resp != nil {
			// Refused before Process logs it: say so, bounded.
			s.logger.Warn("request refused", "status", status, "method", r.Method, "path", short(r.URL.Path),
				"remote", r.RemoteAddr, "reason", shortN(resp.Status.Message, maxLogReason))
		}
	}()
	switch strings.TrimSuffix(strings.ToLower(r.URL.Path), "/") {
	case "", "/gitlab":
	default:
		resp, status = fail(codes.NotFound, fmt.Sprintf("no interceptor at %s: use /gitlab", r.URL.Path)), http.StatusNotFound
		return
	}
	if r.Method != http.MethodPost {
		resp, status = fail(codes.InvalidArgument, "method "+r.Method+" not allowed: POST an InterceptorRequest"), http.StatusMethodNotAllowed
		return
	}
	buf, n, rerr := s.readRequest(w, r)
	held = n
	if rerr != nil {
		resp, status = fail(rerr.code, rerr.msg), rerr.status
		return
	}
	env, err := parseEnvelope(buf)
	if err != nil {
		resp, status = fail(codes.InvalidArgument, "the request is not an InterceptorRequest: "+err.Error()), http.StatusBadRequest
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	resp = s.processEnvelope(ctx, env)
}

func (s *Server) write(w http.ResponseWriter, status int, resp *triggersv1.InterceptorResponse) {
	b, err := json.Marshal(resp)
	if err != nil {
		b, status = []byte(`{"continue":false,"status":{"code":13,"message":"rendering the response failed"}}`), http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (s *Server) observe(resp *triggersv1.InterceptorResponse, d time.Duration) {
	m := s.cfg.Metrics
	if m == nil || resp == nil {
		return
	}
	result := "continue"
	switch {
	case resp.Continue:
	case resp.Status.Code == codes.FailedPrecondition:
		result = "stop"
	default:
		result = "error"
	}
	m.requests.WithLabelValues(result, resp.Status.Code.String()).Inc()
	m.latency.WithLabelValues(result).Observe(d.Seconds())
}

func fail(code codes.Code, msg string) *triggersv1.InterceptorResponse {
	return &triggersv1.InterceptorResponse{Continue: false, Status: triggersv1.Status{Code: code, Message: msg}}
}

// Process decides on one interceptor request.
func (s *Server) Process(ctx context.Context, req *triggersv1.InterceptorRequest) *triggersv1.InterceptorResponse {
	return s.processEnvelope(ctx, &envelope{header: req.Header, params: req.InterceptorParams, extensions: req.Extensions,
		context: req.Context, raw: []byte(req.Body), done: true})
}

// processEnvelope decides on one request; its body is unescaped only once
// the token is checked.
func (s *Server) processEnvelope(ctx context.Context, req *envelope) *triggersv1.InterceptorResponse {
	header := headerOf(req.header)
	triggerID := ""
	eventURL := ""
	if req.context != nil {
		triggerID, eventURL = req.context.TriggerID, req.context.EventURL
	}
	// Every header and context value is the sender's: bounded in logs.
	log := s.logger.With("trigger", short(triggerID), "delivery", short(header.Get("X-Gitlab-Event-UUID")), "event", short(header.Get("X-Gitlab-Event")))
	if req.context != nil {
		log = log.With("event_id", short(req.context.EventID))
	}
	r := &call{env: req, header: header, triggerID: triggerID, eventURL: eventURL, log: log}
	if req.context != nil {
		r.eventID = req.context.EventID
	}
	resp := s.process(ctx, r)
	if resp.Continue {
		log.Info("continue")
	} else {
		log.Info("stop", "code", resp.Status.Code.String(), "reason", shortN(resp.Status.Message, maxLogReason))
	}
	return resp
}

// call is one interceptor request as it goes through the steps of
// process: what the sender sent, then what each step learnt of it.
type call struct {
	env       *envelope
	header    http.Header
	triggerID string // the trigger's ID in the request context ("" without one)
	eventURL  string
	eventID   string
	log       *slog.Logger

	params Params          // parsed by process
	ns     string          // the trigger's namespace, where its Secrets are
	prog   *engine.Program // the rules to run, by rules
}

// process runs the steps in turn: parameters, who sent it (authenticate),
// what it is (eventTypes, rules), once per delivery (dedup), and the
// decision itself (decide).
func (s *Server) process(ctx context.Context, r *call) *triggersv1.InterceptorResponse {
	p, err := ParseParams(r.env.params)
	if err != nil {
		return fail(codes.InvalidArgument, err.Error())
	}
	if p.SecretRef == nil && p.SigningSecretRef == nil && !p.Insecure {
		return fail(codes.FailedPrecondition, "this trigger's ciel interceptor names neither secretRef nor signingSecretRef: anyone reaching the EventListener could start builds; name the webhook's Secret (or set insecure: true for a test setup)")
	}
	r.params = p
	if r.triggerID != "" {
		r.ns, _ = triggersv1.ParseTriggerID(r.triggerID)
	}
	// Who sent it.
	if resp := s.authenticate(ctx, r); resp != nil {
		return resp
	}

	// What it is.
	event := r.header.Get("X-Gitlab-Event")
	if len(p.EventTypes) > 0 && !contains(p.EventTypes, event) {
		return fail(codes.FailedPrecondition, fmt.Sprintf("event type %q is not allowed: eventTypes is %q", short(event), p.EventTypes))
	}
	prog, resp := s.rules(p, event)
	if resp != nil {
		return resp
	}
	r.prog = prog

	// Once per delivery.
	dlv, err := deliveryOf(r.header, p.SigningSecretRef != nil)
	if err != nil {
		return fail(codes.InvalidArgument, err.Error())
	}
	if !p.dedup() {
		dlv.id = ""
	}
	suffix := nameSuffix(r.triggerID, dlv.id, r.eventID)
	if s.cfg.Dedup != nil && dlv.id != "" {
		ticket, err := s.cfg.Dedup.Begin(ctx, dlv.key(r.triggerID))
		if errors.Is(err, dedup.ErrDuplicate) {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.duplicates.Inc()
			}
			return fail(codes.FailedPrecondition, fmt.Sprintf("duplicate delivery %s: already accepted for this trigger", short(dlv.id)))
		}
		if err != nil {
			return fail(codes.Unavailable, "waiting for a copy of this delivery in flight: "+err.Error())
		}
		accepted := false
		defer func() {
			if accepted {
				ticket.Accept()
			} else {
				ticket.Forget()
			}
		}()
		resp := withDelivery(s.decide(ctx, r), suffix)
		accepted = resp.Continue
		return resp
	}
	return withDelivery(s.decide(ctx, r), suffix)
}

// authenticate checks the sender: the token of secretRef, the signature
// with the key of signingSecretRef, or both.
func (s *Server) authenticate(ctx context.Context, r *call) *triggersv1.InterceptorResponse {
	p := r.params
	if p.SecretRef != nil {
		secret, resp := s.secret(ctx, r.ns, p.SecretRef, "secretRef")
		if resp != nil {
			return resp
		}
		if err := webhook.CheckToken(r.header, secret); err != nil {
			return fail(codes.InvalidArgument, err.Error())
		}
	}
	if p.SigningSecretRef != nil {
		secret, resp := s.secret(ctx, r.ns, p.SigningSecretRef, "signingSecretRef")
		if resp != nil {
			return resp
		}
		key, err := webhook.SigningKey(secret)
		if err != nil {
			return fail(codes.FailedPrecondition, fmt.Sprintf("signingSecretRef %s/%s: %v", p.SigningSecretRef.SecretName, p.SigningSecretRef.SecretKey, err))
		}
		if err := (webhook.Verifier{Key: key, Tolerance: s.cfg.SignatureTolerance}).Verify(r.header, r.env.body()); err != nil {
			return fail(codes.InvalidArgument, err.Error())
		}
	}
	return nil
}

// withDelivery adds extensions.delivery to an accepted response.
func withDelivery(resp *triggersv1.InterceptorResponse, suffix string) *triggersv1.InterceptorResponse {
	if !resp.Continue {
		return resp
	}
	if resp.Extensions == nil {
		resp.Extensions = map[string]any{}
	}
	resp.Extensions[ExtensionDelivery] = map[string]any{"name_suffix": suffix}
	return resp
}

// decide decodes the event and runs the request's rules on it.
func (s *Server) decide(ctx context.Context, r *call) *triggersv1.InterceptorResponse {
	p, log, header, body := r.params, r.log, r.header, r.env.body()
	src, resp := s.changedFiles(p, log)
	if resp != nil {
		return resp
	}
	// body is a slice of this request's own buffer (readRequest), which
	// nothing writes after the envelope's in-place unescape: the decoder
	// may keep strings pointing into it.
	ev, err := s.cfg.Engine.Decode(engine.Input{Body: body, SharedBody: true, Header: header})
	if err != nil {
		return fail(codes.InvalidArgument, err.Error())
	}
	if resp := s.refuseFork(p, ev); resp != nil {
		return resp
	}
	// A response that does not continue carries no extensions, and the
	// payload's changed files need no request and cannot fail: the engine
	// may leave them for a push its filter rejects without reading them.
	_, offline := src.(gitlab.PayloadSource)
	d, err := s.cfg.Engine.Evaluate(ctx, r.prog, engine.Input{
		Body: body, SharedBody: true, Header: header, RequestURL: r.eventURL, Extensions: r.env.extensions, Namespace: r.ns,
		ChangedFiles: s.withMergeRequests(src, p, log), Event: ev, DeferExtensions: offline,
	})
	if err != nil {
		switch engine.KindOf(err) {
		case engine.KindInput, engine.KindEval, engine.KindLimit, engine.KindCompile:
			return fail(codes.InvalidArgument, err.Error())
		case engine.KindChangedFiles:
			return fail(codes.Unavailable, err.Error()+" (failing closed; set the param failOpen: true to decide on the payload's changed files instead)")
		default:
			log.Error("internal error", "error", err)
			return fail(codes.Internal, err.Error())
		}
	}
	if !d.Continue {
		what := "the filter"
		if p.Policy != "" {
			what = "policy " + p.Policy
		}
		return fail(codes.FailedPrecondition, what+" did not return true")
	}
	if id, ok := identity(d.Event); ok {
		if resp := s.checkProject(ctx, p, id); resp != nil {
			return resp
		}
	}
	return &triggersv1.InterceptorResponse{Continue: true, Extensions: listChangedFiles(d.Extensions, p.maxListed())}
}

// rules returns the compiled policy or inline CEL.
func (s *Server) rules(p Params, event string) (*engine.Program, *triggersv1.InterceptorResponse) {
	if p.Policy != "" {
		set := s.cfg.Policies.Set()
		if set == nil {
			return nil, fail(codes.Unavailable, "no policies loaded: the interceptor's policy directory did not load (see its logs)")
		}
		pol, ok := set.Get(p.Policy)
		if !ok {
			names := set.Names()
			sort.Strings(names)
			return nil, fail(codes.InvalidArgument, fmt.Sprintf("param policy: unknown policy %q; loaded policies: %s", p.Policy, strings.Join(names, ", ")))
		}
		if !pol.AllowsEvent(event) {
			return nil, fail(codes.FailedPrecondition, fmt.Sprintf("policy %s does not accept event type %q (its eventTypes: %q)", pol.Name, short(event), pol.EventTypes))
		}
		return pol.Program, nil
	}
	prog, err := s.cfg.Engine.Compile(engine.Rules{Filter: p.Filter, Overlays: p.Overlays, Typed: p.Typed})
	if err != nil {
		return nil, fail(codes.InvalidArgument, err.Error())
	}
	return prog, nil
}

func (s *Server) changedFiles(p Params, log *slog.Logger) (gitlab.ChangedFilesSource, *triggersv1.InterceptorResponse) {
	var src gitlab.ChangedFilesSource
	switch p.ChangedFiles {
	case ChangedFilesOff:
		return gitlab.ChangedFilesFunc(func(context.Context, *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
			return gitlab.ChangedFiles{All: []string{}, Added: []string{}, Modified: []string{}, Removed: []string{}, Source: gitlab.SourceNone}, nil
		}), nil
	case ChangedFilesModeAPI:
		if s.cfg.API == nil {
			return nil, fail(codes.InvalidArgument, "param changedFiles: api needs the GitLab API, which this interceptor is not configured for (--gitlab-url and a token)")
		}
		src = gitlab.ChangedFilesFunc(s.cfg.API.Compare)
	default:
		if s.cfg.API == nil {
			return gitlab.PayloadSource{}, nil
		}
		src = gitlab.ChangedFilesFunc(s.cfg.API.ChangedFiles)
	}
	if !p.FailOpen {
		return src, nil
	}
	return gitlab.ChangedFilesFunc(func(ctx context.Context, e *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
		cf, err := src.ChangedFiles(ctx, e)
		if err != nil {
			log.Warn("GitLab API failed; failing open on the payload's changed files", "error", err)
			return gitlab.PayloadChangedFiles(e), nil
		}
		return cf, nil
	}), nil
}

func (s *Server) secret(ctx context.Context, ns string, ref *SecretRef, param string) ([]byte, *triggersv1.InterceptorResponse) {
	if s.cfg.Secrets == nil {
		return nil, fail(codes.FailedPrecondition, "param "+param+": this interceptor has no access to Secrets")
	}
	b, err := s.cfg.Secrets.GetSecret(ctx, ns, ref.SecretName, ref.SecretKey)
	if err != nil {
		if errors.Is(err, secrets.ErrNotFound) {
			return nil, fail(codes.FailedPrecondition, fmt.Sprintf("param %s: %v (in namespace %q)", param, err, ns))
		}
		return nil, fail(codes.Unavailable, fmt.Sprintf("param %s: reading secret %s: %v", param, ref.SecretName, err))
	}
	return b, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
