package celenv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// ValueJSON renders the result of an expression as JSON the way Triggers'
// CEL interceptor renders an overlay into its extensions, so that
// TriggerBindings see the same values:
//
//   - strings, booleans and maps as themselves, map keys sorted;
//   - int and double as JSON numbers; an int beyond ±2^53, which a JSON
//     number (float64) cannot hold exactly, as a decimal string;
//   - bytes as a base64 string (use string(...) to get text);
//   - lists as arrays.
//
// Where Triggers fails the request, ValueJSON renders instead: a uint as a
// number and null as null. Other values (timestamps, durations, types,
// optionals) are an error, as in Triggers. The output is compact.
func ValueJSON(v ref.Val) ([]byte, error) {
	if v == nil {
		return nil, errors.New("rendering a CEL value as JSON: nil value")
	}
	if types.IsError(v) {
		return nil, fmt.Errorf("rendering a CEL value as JSON: %w", v.(*types.Err))
	}
	var target reflect.Type
	switch v.(type) {
	case types.Null:
		return []byte("null"), nil
	case types.Uint:
		return json.Marshal(float64(v.(types.Uint)))
	case types.String, types.Bytes, types.Double, types.Int, types.Bool:
		target = structPBValueType
	case traits.Lister:
		target = listValuePBType
	case traits.Mapper:
		target = structPBType
	default:
		return nil, fmt.Errorf("rendering a CEL %v as JSON: not a JSON value", v.Type())
	}
	raw, err := v.ConvertToNative(target)
	if err != nil {
		return nil, fmt.Errorf("rendering a CEL %v as JSON: %w", v.Type(), err)
	}
	return protojsonCompact(raw.(proto.Message))
}

// protojsonCompact marshals with protojson (which adds random spaces on
// purpose) and compacts the result.
func protojsonCompact(m proto.Message) ([]byte, error) {
	b, err := protojson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("rendering as JSON: %w", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, fmt.Errorf("rendering as JSON: %w", err)
	}
	return out.Bytes(), nil
}
