package gitlab

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// TestStringAt checks that a string boxed by stringAt (a number by
// float64At) is, to every reader
// (type switches, ==, reflect, fmt, encoding/json, map keys), the same as
// any(s), and that it survives collections once its block is unreferenced
// but for the interfaces.
func TestStringAt(t *testing.T) {
	for _, s := range []string{"", "a", "refs/heads/main", strings.Repeat("é", 100)} {
		block := []string{s}
		got, want := stringAt(&block[0]), any(s)
		if got != want {
			t.Errorf("%q: boxed != any(s)", s)
		}
		if v, ok := got.(string); !ok || v != s {
			t.Errorf("%q: type switch gave %v, %v", s, v, ok)
		}
		if reflect.TypeOf(got) != reflect.TypeOf("") || reflect.ValueOf(got).String() != s {
			t.Errorf("%q: reflect sees %v", s, reflect.TypeOf(got))
		}
		if fmt.Sprint(got) != s {
			t.Errorf("%q: fmt gives %q", s, fmt.Sprint(got))
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			t.Errorf("%q: JSON %s, want %s", s, a, b)
		}
		if m := map[any]int{want: 1}; m[got] != 1 {
			t.Errorf("%q: not the same map key", s)
		}
	}

	for _, f := range []float64{0, 1, -1.5, 1e300, 123456789} {
		block := []float64{f}
		got, want := float64At(&block[0]), any(f)
		if got != want || reflect.TypeOf(got) != reflect.TypeOf(f) || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%v: boxed %#v, want %#v", f, got, want)
		}
		if v, ok := got.(float64); !ok || v != f {
			t.Errorf("%v: type switch gave %v, %v", f, v, ok)
		}
	}

	// Many parses: every value stays intact after the parser's blocks are
	// only reachable through the decoded values.
	var bodies []map[string]any
	for i := range 200 {
		body := fmt.Sprintf(`{"i":"v%d","l":["a%d","b%d","c%d"],"o":{"k":"x%d","n":%d}}`, i, i, i, i, i, i)
		v, err := parseJSON([]byte(body), DefaultMaxDepth)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, v.(map[string]any))
	}
	runtime.GC()
	runtime.GC()
	for i, m := range bodies {
		want := map[string]any{"i": fmt.Sprintf("v%d", i),
			"l": []any{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i), fmt.Sprintf("c%d", i)},
			"o": map[string]any{"k": fmt.Sprintf("x%d", i), "n": float64(i)}}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("body %d after GC: %v, want %v", i, m, want)
		}
	}
}
