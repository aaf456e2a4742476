// Package celenv builds the one CEL environment of ciel, shared by the
// interceptor and the cel-eval command.
//
// An expression written for a Tekton Triggers CEL interceptor works here
// unchanged and gives the same result: the environment declares Triggers'
// variables (body, header, extensions, requestURL), Triggers' functions
// (match, canonical, truncate, translate, parseJSON, parseYAML, parseURL,
// marshalJSON, compareSecret, first, last, and the documented decodeb64)
// and cel-go's Strings, Encoders, Sets, Lists and Math extensions as Triggers
// configures them. Where Triggers panics or returns a broken value, the
// function here returns a CEL error or a well-formed value instead; the
// reference page docs/cel-reference.md lists every difference.
//
// On top of that come ciel's own functions (glob, matchesAny, filterPaths:
// GitHub Actions path filters over changed files, see package pathglob).
//
// Build the environment once with New, compile each expression once, and
// evaluate with ContextEval, passing NewActivation(ctx, vars) as the input so
// that compareSecret can read Secrets with the request's context and the
// trigger's namespace (WithNamespace). Unlike Triggers, nothing is rebuilt
// per request.
//
// Every function reports a cost proportional to the size of its input, both
// to the checker (Env.EstimateCost) and at runtime (cel.CostLimit,
// EvalDetails.ActualCost). The estimators and trackers are wired inside the
// environment: pass nothing beyond the usual cel.CostLimit and
// cel.InterruptCheckFrequency to Env.Program.
package celenv

import (
	"errors"
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	celext "github.com/google/cel-go/ext"
)

// Names of the variables an expression sees.
const (
	// VarBody is the decoded JSON body of the webhook request, map(string, dyn).
	VarBody = "body"
	// VarHeader is the request header, map(string, dyn); at runtime an
	// http.Header (map[string][]string).
	VarHeader = "header"
	// VarExtensions holds what earlier interceptors added, map(string, dyn).
	VarExtensions = "extensions"
	// VarRequestURL is the URL of the incoming request, string.
	VarRequestURL = "requestURL"
)

// DefaultCacheSize is the default number of compiled path-pattern lists and
// regular expressions kept by an environment.
const DefaultCacheSize = 1024

type options struct {
	secrets        SecretGetter
	bodyType       *cel.Type
	extensionsType *cel.Type
	envOptions     []cel.EnvOption
	cacheSize      int
	cacheSizeSet   bool
}

// Option configures New.
type Option func(*options) error

// WithSecretGetter sets where compareSecret reads Secrets. Default: none, and
// compareSecret evaluates to an error saying so.
func WithSecretGetter(g SecretGetter) Option {
	return setOnce("secret getter", g, func(o *options) *SecretGetter { return &o.secrets })
}

// WithBodyType declares the body variable with a richer type than Triggers'
// map(string, dyn), for a typed-check mode (for example an object type
// registered with WithEnvOptions(cel.Types(...))). Default: map(string, dyn).
func WithBodyType(t *cel.Type) Option {
	return setOnce("body type", t, func(o *options) **cel.Type { return &o.bodyType })
}

// WithExtensionsType declares the extensions variable with a richer type
// than map(string, dyn). Default: map(string, dyn).
func WithExtensionsType(t *cel.Type) Option {
	return setOnce("extensions type", t, func(o *options) **cel.Type { return &o.extensionsType })
}

// setOnce is the option that sets the field of options that field points
// to: v must not be nil, and the field is set at most once.
func setOnce[T comparable](what string, v T, field func(*options) *T) Option {
	return func(o *options) error {
		var zero T
		if v == zero {
			return fmt.Errorf("%s is nil", what)
		}
		p := field(o)
		if *p != zero {
			return fmt.Errorf("%s set twice", what)
		}
		*p = v
		return nil
	}
}

// WithEnvOptions appends options to the environment after ciel's own
// (types for a typed-check mode, more variables or functions). May be given
// several times. Default: none.
func WithEnvOptions(opts ...cel.EnvOption) Option {
	return func(o *options) error {
		for i, opt := range opts {
			if opt == nil {
				return fmt.Errorf("env option %d is nil", i)
			}
		}
		o.envOptions = append(o.envOptions, opts...)
		return nil
	}
}

// WithCacheSize bounds how many compiled pattern lists and regular
// expressions (translate) the environment keeps, each kind separately.
// Default: DefaultCacheSize.
func WithCacheSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("cache size %d: must be at least 1", n)
		}
		if o.cacheSizeSet {
			return errors.New("cache size set twice")
		}
		o.cacheSize, o.cacheSizeSet = n, true
		return nil
	}
}

// New builds the CEL environment. It is safe for concurrent use; build it
// once and share it.
func New(opts ...Option) (*cel.Env, error) {
	env, _, err := build(opts)
	return env, err
}

// build is New, also returning the state shared by the libraries (tests
// look at its caches).
func build(opts []Option) (*cel.Env, *state, error) {
	o := options{cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		if opt == nil {
			return nil, nil, errors.New("building the CEL environment: nil option")
		}
		if err := opt(&o); err != nil {
			return nil, nil, fmt.Errorf("building the CEL environment: %w", err)
		}
	}
	mapStrDyn := types.NewMapType(types.StringType, types.DynType)
	body, extensions := mapStrDyn, mapStrDyn
	if o.bodyType != nil {
		body = o.bodyType
	}
	if o.extensionsType != nil {
		extensions = o.extensionsType
	}
	st := newState(o.secrets, o.cacheSize)
	envOpts := []cel.EnvOption{
		cel.Lib(triggersLib(st)),
		celext.Strings(),
		celext.Encoders(),
		celext.Sets(),
		celext.Lists(),
		celext.Math(),
		cel.Lib(cielLib(st)),
		cel.Variable(VarBody, body),
		cel.Variable(VarHeader, mapStrDyn),
		cel.Variable(VarExtensions, extensions),
		cel.Variable(VarRequestURL, types.StringType),
	}
	envOpts = append(envOpts, o.envOptions...)
	env, err := cel.NewEnv(envOpts...)
	if err != nil {
		return nil, nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	return env, st, nil
}
