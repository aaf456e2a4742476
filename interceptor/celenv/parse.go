package celenv

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"google.golang.org/protobuf/types/known/structpb"
	"sigs.k8s.io/yaml"
)

// Parsing and encoding functions (Triggers-compatible).
//
// parseJSON
//
// Decodes a JSON object into a map. Numbers become doubles, as in body.
// JSON null gives an empty map (as in Triggers); other non-objects are an
// error.
//
//	<string>.parseJSON() -> <map(string, dyn)>
//
//	'{"testing":"value"}'.parseJSON().testing == 'value'
//
// parseYAML
//
// Decodes a YAML mapping into a map, through JSON (sigs.k8s.io/yaml, as
// Triggers): numbers become doubles, keys strings.
//
//	<string>.parseYAML() -> <map(string, dyn)>
//
//	'key1: value1\nkey2: value2\n'.parseYAML().key1 == 'value1'
//
// parseURL
//
// Splits a URL into scheme, host, path, rawQuery, fragment, query (each
// parameter's values joined with ","), queryStrings (each parameter's list
// of values) and, when the URL has user information, auth (username,
// password).
//
//	<string>.parseURL() -> <map(string, dyn)>
//
//	'https://example.com/test?query=testing'.parseURL().query['query'] == 'testing'
//
// marshalJSON
//
// Encodes a map or list as compact JSON with sorted keys. Values go through
// google.protobuf.Struct as in Triggers: numbers are doubles, bytes base64
// strings, and <, >, & are escaped as \u003c, \u003e, \u0026.
//
//	<map(string, dyn)>.marshalJSON() -> <string>
//	<list(dyn)>.marshalJSON() -> <string>
//
//	body.commits.map(c, c.id).marshalJSON()
const (
	fnParseJSON   = "parseJSON"
	fnParseYAML   = "parseYAML"
	fnParseURL    = "parseURL"
	fnMarshalJSON = "marshalJSON"

	ovParseJSON       = "parseJSON_string"
	ovParseYAML       = "parseYAML_string"
	ovParseURL        = "parseURL_string"
	ovMarshalJSONMap  = "marshalJSON_map"
	ovMarshalJSONList = "marshalJSON_list"
	// marshalJSONAlias names calls whose receiver type is only known at
	// runtime (dyn): the checker leaves both overloads open.
	marshalJSONAlias = "marshalJSON_dyn"
)

// parseEstimate prices decoding a string of the target's size; the result
// has at most one entry per character.
func parseEstimate(factor float64) checker.FunctionEstimator {
	return func(est checker.CostEstimator, target *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
		if target == nil {
			return nil
		}
		size := estimatedSize(est, *target)
		result := checker.SizeEstimate{Min: 0, Max: size.Max}
		return &checker.CallEstimate{CostEstimate: linearEstimate(size, factor), ResultSize: &result}
	}
}

func parseTracker(factor float64) func([]ref.Val, ref.Val) *uint64 {
	return func(args []ref.Val, _ ref.Val) *uint64 {
		if len(args) != 1 {
			return uptr(callCost)
		}
		return uptr(linearCost(actualSize(args[0]), factor))
	}
}

// marshalEstimate can only count the receiver's entries: the size of nested
// values is unknown to the checker. The runtime cost counts the output.
func marshalEstimate(est checker.CostEstimator, target *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
	if target == nil {
		return nil
	}
	return &checker.CallEstimate{CostEstimate: linearEstimate(estimatedSize(est, *target), marshalFactor)}
}

func marshalTracker(_ []ref.Val, result ref.Val) *uint64 {
	if types.IsError(result) {
		return uptr(callCost)
	}
	return uptr(linearCost(actualSize(result), marshalFactor))
}

var parseCosts = []costSpec{
	{overload: ovParseJSON, estimate: parseEstimate(parseJSONFactor), track: parseTracker(parseJSONFactor)},
	{overload: ovParseYAML, estimate: parseEstimate(parseYAMLFactor), track: parseTracker(parseYAMLFactor)},
	{overload: ovParseURL,
		estimate: func(est checker.CostEstimator, target *checker.AstNode, _ []checker.AstNode) *checker.CallEstimate {
			if target == nil {
				return nil
			}
			result := checker.SizeEstimate{Min: 7, Max: 8}
			return &checker.CallEstimate{CostEstimate: linearEstimate(estimatedSize(est, *target), traversalFactor), ResultSize: &result}
		},
		track: parseTracker(traversalFactor)},
	{overload: ovMarshalJSONMap, estimate: marshalEstimate, track: marshalTracker},
	{overload: ovMarshalJSONList, estimate: marshalEstimate, track: marshalTracker},
	{overload: marshalJSONAlias, track: marshalTracker},
}

func parseFunctions() []cel.EnvOption {
	mapStrDyn := cel.MapType(cel.StringType, cel.DynType)
	listDyn := cel.ListType(cel.DynType)
	return []cel.EnvOption{
		cel.Function(fnParseJSON,
			cel.MemberOverload(ovParseJSON, []*cel.Type{cel.StringType}, mapStrDyn,
				cel.OverloadExamples(`'{"testing":"value"}'.parseJSON().testing`),
				cel.UnaryBinding(parseJSON))),
		cel.Function(fnParseYAML,
			cel.MemberOverload(ovParseYAML, []*cel.Type{cel.StringType}, mapStrDyn,
				cel.OverloadExamples(`'key1: value1'.parseYAML().key1`),
				cel.UnaryBinding(parseYAML))),
		cel.Function(fnParseURL,
			cel.MemberOverload(ovParseURL, []*cel.Type{cel.StringType}, mapStrDyn,
				cel.OverloadExamples(`requestURL.parseURL().path`),
				cel.UnaryBinding(parseURL))),
		cel.Function(fnMarshalJSON,
			cel.MemberOverload(ovMarshalJSONMap, []*cel.Type{mapStrDyn}, cel.StringType,
				cel.OverloadExamples(`body.project.marshalJSON()`),
				cel.UnaryBinding(marshalJSON)),
			cel.MemberOverload(ovMarshalJSONList, []*cel.Type{listDyn}, cel.StringType,
				cel.OverloadExamples(`body.commits.marshalJSON()`),
				cel.UnaryBinding(marshalJSON))),
	}
}

func parseJSON(v ref.Val) ref.Val {
	decoded := map[string]any{}
	if err := json.Unmarshal([]byte(v.(types.String)), &decoded); err != nil {
		return types.NewErr("parseJSON: %v", err)
	}
	return types.DefaultTypeAdapter.NativeToValue(decoded)
}

func parseYAML(v ref.Val) ref.Val {
	decoded := map[string]any{}
	if err := yaml.Unmarshal([]byte(v.(types.String)), &decoded); err != nil {
		return types.NewErr("parseYAML: %v", err)
	}
	return types.DefaultTypeAdapter.NativeToValue(decoded)
}

func parseURL(v ref.Val) ref.Val {
	u, err := url.Parse(string(v.(types.String)))
	if err != nil {
		return types.NewErr("parseURL: %v", err)
	}
	query := u.Query()
	flat := make(map[string]string, len(query))
	for k, vals := range query {
		flat[k] = strings.Join(vals, ",")
	}
	m := map[string]any{
		"scheme":       u.Scheme,
		"host":         u.Host,
		"path":         u.Path,
		"rawQuery":     u.RawQuery,
		"fragment":     u.Fragment,
		"queryStrings": map[string][]string(query),
		"query":        flat,
	}
	if u.User != nil {
		password, _ := u.User.Password()
		m["auth"] = map[string]string{"username": u.User.Username(), "password": password}
	}
	return types.DefaultTypeAdapter.NativeToValue(m)
}

var (
	structPBType      = reflect.TypeFor[*structpb.Struct]()
	listValuePBType   = reflect.TypeFor[*structpb.ListValue]()
	structPBValueType = reflect.TypeFor[*structpb.Value]()
)

func marshalJSON(v ref.Val) ref.Val {
	var target reflect.Type
	switch v.Type() {
	case types.MapType:
		target = structPBType
	case types.ListType:
		target = listValuePBType
	default:
		return types.NewErr("marshalJSON: unexpected type '%v': want a map or a list", v.Type())
	}
	native, err := v.ConvertToNative(target)
	if err != nil {
		return types.NewErr("marshalJSON: %v", err)
	}
	b, err := json.Marshal(native)
	if err != nil {
		return types.NewErr("marshalJSON: %v", err)
	}
	return types.String(b)
}
