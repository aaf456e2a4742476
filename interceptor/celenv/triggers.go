package celenv

import (
	"regexp"
	"slices"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/interpreter"

	"github.com/ciel-ci/ciel/interceptor/pathglob"
)

// state is shared by the libraries of one environment: the secret getter
// and the caches of compiled arguments.
type state struct {
	secrets  SecretGetter
	regexps  *cache[*regexp.Regexp]
	patterns *cache[*pathglob.Pattern]
	lists    *cache[*pathglob.List]
}

func newState(secrets SecretGetter, cacheSize int) *state {
	return &state{
		secrets:  secrets,
		regexps:  newLRU[*regexp.Regexp](cacheSize),
		patterns: newLRU[*pathglob.Pattern](cacheSize),
		lists:    newLRU[*pathglob.List](cacheSize),
	}
}

// library is one of the environment's cel.Library values: its functions,
// their cost model, and the decorators that plan their calls.
type library struct {
	name      string
	functions []cel.EnvOption
	// costs are the cost models of the functions, and of the cel-go
	// functions whose estimates they replace.
	costs [][]costSpec
	// decorate plans the calls that need the request context.
	decorate interpreter.InterpretableDecoratorV2
	// aliases names the overload of a call whose receiver is only known at
	// runtime (aliasDecorator), by function.
	aliases map[string]string
}

var _ cel.SingletonLibrary = (*library)(nil)

// triggersLib declares the functions of Tekton Triggers' CEL interceptor.
// Each group lives in its own file: headers.go (match, canonical),
// strings.go (truncate, translate, decodeb64), parse.go (parseJSON,
// parseYAML, parseURL, marshalJSON), lists.go (first, last) and secret.go
// (compareSecret).
func triggersLib(st *state) *library {
	return &library{
		name:      "ciel.triggers",
		functions: slices.Concat(headerFunctions(), stringFunctions(st), parseFunctions(), listFunctions(), secretFunctions()),
		costs:     [][]costSpec{headerCosts, stringCosts, parseCosts, listCosts, secretCosts},
		decorate:  st.decorateCompareSecret,
		aliases:   map[string]string{fnMarshalJSON: marshalJSONAlias},
	}
}

// cielLib declares ciel's own functions. Groups, one file each:
// paths.go (glob, matchesAny, filterPaths). Added after cel-go's
// libraries, it also replaces the estimates of some of theirs (extCosts).
func cielLib(st *state) *library {
	return &library{
		name:      "ciel.functions",
		functions: pathFunctions(st),
		costs:     [][]costSpec{pathCosts, extCosts},
		decorate:  st.decoratePaths,
		aliases:   map[string]string{fnMatchesAny: matchesAnyAlias},
	}
}

// LibraryName implements cel.SingletonLibrary: one copy per environment.
func (l *library) LibraryName() string { return l.name }

// CompileOptions implements cel.Library.
func (l *library) CompileOptions() []cel.EnvOption {
	estimators, _ := costOptions(l.costs...)
	return append(slices.Clone(l.functions), estimators)
}

// ProgramOptions implements cel.Library.
func (l *library) ProgramOptions() []cel.ProgramOption {
	_, trackers := costOptions(l.costs...)
	return []cel.ProgramOption{
		// The library's decorator first: the alias decorator then wraps
		// the call it planned (a pathCall).
		cel.CustomDecoratorV2(l.decorate),
		cel.CustomDecoratorV2(aliasDecorator(l.aliases)),
		trackers,
	}
}

// decorators is a compile-time reminder of the decorator signature.
var _ interpreter.InterpretableDecoratorV2 = aliasDecorator(nil)
