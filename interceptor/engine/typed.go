package engine

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
)

// Typed checking.
//
// A Rules with Typed set is type-checked in a second environment where body
// is an object type derived from gitlab.PushEvent (the push and tag push
// payloads share one shape) and gitlab.MergeRequestEvent together (the
// fields of both: one rule may serve both events), and extensions an
// object holding push, merge_request and changed_files, typed from what
// the engine puts there (changed_files.update exists on merge request
// events only). A misspelt field,
// body.comits, is then a compile error with its line and column instead of
// a runtime "no such key".
//
// The types exist for the checker only: the program that runs is compiled
// in the ordinary environment, so a typed expression evaluates exactly as
// in Tekton Triggers. The field types follow what the program sees at
// runtime: every JSON number in body is a double (encoding/json), every
// number the engine computes (push.project_id, changed_files.count,
// semver.major) an int.
//
// Consequences, documented for policy authors: typed rules may read only
// extensions.push, extensions.merge_request and extensions.changed_files
// (not extensions set by an earlier interceptor), and only the fields of
// push, tag push and merge request payloads (not other events).

const (
	typePrefix     = "ciel.gitlab."
	bodyTypeName   = typePrefix + "PushEvent"
	extensionsName = typePrefix + "Extensions"
)

// schema is a check-only type provider: named object types with fields,
// everything else from the base provider of the ordinary environment.
type schema struct {
	base    types.Provider
	structs map[string]map[string]*types.Type
}

var _ types.Provider = (*schema)(nil)

func newSchema(base types.Provider) (*schema, error) {
	s := &schema{base: base, structs: map[string]map[string]*types.Type{}}
	s.fromStruct(bodyTypeName, reflect.TypeOf(gitlab.PushEvent{}))
	if err := s.mergeStruct(bodyTypeName, reflect.TypeOf(gitlab.MergeRequestEvent{})); err != nil {
		return nil, err
	}

	push := s.fromMap(typePrefix+"Push", gitlab.Facts{}.Map())
	mr := s.fromMap(typePrefix+"MergeRequest", gitlab.MergeRequestFacts{}.Map())
	cf := gitlab.ChangedFiles{}.Map()
	cf["update"] = gitlab.ChangedFiles{}.Map()
	changed := s.fromMap(typePrefix+"ChangedFiles", cf)
	s.structs[extensionsName] = map[string]*types.Type{
		"push":          push,
		"merge_request": mr,
		"changed_files": changed,
	}
	return s, nil
}

// mergeStruct adds the fields of t to the object type name; a field both
// have must have the same type in both.
func (s *schema) mergeStruct(name string, t reflect.Type) error {
	fields := s.structs[name]
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		ft := s.jsonType(f.Type)
		if prev, ok := fields[tag]; ok && !prev.IsExactType(ft) {
			return fmt.Errorf("building the typed schema: field %s of %s is %s in one event and %s in another", tag, name, prev, ft)
		}
		fields[tag] = ft
	}
	return nil
}

// fromStruct declares the object type name with a field per json-tagged
// field of t, as encoding/json decodes the payload into map[string]any.
func (s *schema) fromStruct(name string, t reflect.Type) *types.Type {
	if _, ok := s.structs[name]; ok {
		return types.NewObjectType(name)
	}
	fields := map[string]*types.Type{}
	s.structs[name] = fields
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		fields[tag] = s.jsonType(f.Type)
	}
	return types.NewObjectType(name)
}

// jsonType is the CEL type of a value of Go type t after a JSON round trip
// into map[string]any.
func (s *schema) jsonType(t reflect.Type) *types.Type {
	switch t.Kind() {
	case reflect.String:
		return types.StringType
	case reflect.Bool:
		return types.BoolType
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return types.DoubleType
	case reflect.Slice, reflect.Array:
		return types.NewListType(s.jsonType(t.Elem()))
	case reflect.Struct:
		return s.fromStruct(typePrefix+t.Name(), t)
	case reflect.Pointer:
		return s.jsonType(t.Elem())
	default: // maps of arbitrary JSON (push_options), interfaces
		return types.NewMapType(types.StringType, types.DynType)
	}
}

// fromMap declares the object type name from a sample of what the engine
// puts into extensions: the Go types of its values are the CEL types.
func (s *schema) fromMap(name string, sample map[string]any) *types.Type {
	fields := map[string]*types.Type{}
	s.structs[name] = fields
	for k, v := range sample {
		switch v := v.(type) {
		case string:
			fields[k] = types.StringType
		case bool:
			fields[k] = types.BoolType
		case int, int64:
			fields[k] = types.IntType
		case []any, []string:
			fields[k] = types.NewListType(types.StringType)
		case map[string]any:
			fields[k] = s.fromMap(name+"_"+k, v)
		default:
			fields[k] = types.DynType
		}
	}
	return types.NewObjectType(name)
}

func (s *schema) EnumValue(name string) ref.Val { return s.base.EnumValue(name) }

func (s *schema) FindIdent(name string) (ref.Val, bool) { return s.base.FindIdent(name) }

func (s *schema) FindStructType(name string) (*types.Type, bool) {
	if _, ok := s.structs[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return s.base.FindStructType(name)
}

func (s *schema) FindStructFieldNames(name string) ([]string, bool) {
	fields, ok := s.structs[name]
	if !ok {
		return s.base.FindStructFieldNames(name)
	}
	names := make([]string, 0, len(fields))
	for n := range fields {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, true
}

func (s *schema) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	fields, ok := s.structs[name]
	if !ok {
		return s.base.FindStructFieldType(name, field)
	}
	t, ok := fields[field]
	if !ok {
		return nil, false
	}
	return &types.FieldType{Type: t}, true
}

// NewValue refuses: the schema exists for the checker, programs never run
// in the typed environment.
func (s *schema) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := s.structs[name]; ok {
		return types.NewErr("%s cannot be constructed: typed checking only", name)
	}
	return s.base.NewValue(name, fields)
}

// typedEnvOptions are the options that turn the ordinary environment into
// the typed-check one.
func typedEnvOptions(base *cel.Env) ([]cel.EnvOption, *cel.Type, *cel.Type, error) {
	s, err := newSchema(base.CELTypeProvider())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("building the typed schema: %w", err)
	}
	return []cel.EnvOption{cel.CustomTypeProvider(s)},
		cel.ObjectType(bodyTypeName), cel.ObjectType(extensionsName), nil
}
