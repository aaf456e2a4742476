package celenv

import (
	"regexp"

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

// triggersLib declares the functions of Tekton Triggers' CEL interceptor.
// Each group lives in its own file: headers.go (match, canonical),
// strings.go (truncate, translate, decodeb64), parse.go (parseJSON,
// parseYAML, parseURL, marshalJSON), lists.go (first, last) and secret.go
// (compareSecret).
type triggersLib struct{ st *state }

var _ cel.Library = (*triggersLib)(nil)

// LibraryName implements cel.SingletonLibrary: one copy per environment.
func (*triggersLib) LibraryName() string { return "ciel.triggers" }

// costs is the cost model of the library's functions.
func (l *triggersLib) costs() (cel.EnvOption, cel.ProgramOption) {
	return costOptions(headerCosts, stringCosts, parseCosts, listCosts, secretCosts)
}

// CompileOptions implements cel.Library.
func (l *triggersLib) CompileOptions() []cel.EnvOption {
	opts := []cel.EnvOption{}
	opts = append(opts, headerFunctions()...)
	opts = append(opts, stringFunctions(l.st)...)
	opts = append(opts, parseFunctions()...)
	opts = append(opts, listFunctions()...)
	opts = append(opts, secretFunctions()...)
	estimators, _ := l.costs()
	return append(opts, estimators)
}

// ProgramOptions implements cel.Library.
func (l *triggersLib) ProgramOptions() []cel.ProgramOption {
	_, trackers := l.costs()
	return []cel.ProgramOption{
		cel.CustomDecoratorV2(l.st.decorateCompareSecret),
		cel.CustomDecoratorV2(aliasDecorator(map[string]string{fnMarshalJSON: marshalJSONAlias})),
		trackers,
	}
}

// cielLib declares ciel's own functions. Groups, one file each:
// paths.go (glob, matchesAny, filterPaths).
type cielLib struct{ st *state }

var _ cel.Library = (*cielLib)(nil)

// LibraryName implements cel.SingletonLibrary: one copy per environment.
func (*cielLib) LibraryName() string { return "ciel.functions" }

// costs is the cost model of the library's functions and of the cel-go
// functions whose estimates it replaces (extCosts, estimates only).
func (l *cielLib) costs() (cel.EnvOption, cel.ProgramOption) {
	return costOptions(pathCosts, extCosts)
}

// CompileOptions implements cel.Library.
func (l *cielLib) CompileOptions() []cel.EnvOption {
	// After cel-go's libraries: these estimators replace theirs.
	estimators, _ := l.costs()
	return append(pathFunctions(l.st), estimators)
}

// ProgramOptions implements cel.Library.
func (l *cielLib) ProgramOptions() []cel.ProgramOption {
	_, trackers := l.costs()
	return []cel.ProgramOption{
		// Paths first: the alias decorator then wraps the pathCall.
		cel.CustomDecoratorV2(l.st.decoratePaths),
		cel.CustomDecoratorV2(aliasDecorator(map[string]string{fnMatchesAny: matchesAnyAlias})),
		trackers,
	}
}

// decorators is a compile-time reminder of the decorator signature.
var _ interpreter.InterpretableDecoratorV2 = aliasDecorator(nil)
