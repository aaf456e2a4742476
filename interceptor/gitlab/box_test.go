package gitlab

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// TestStringAt checks that a string boxed by stringAt (a number by
// float64At, a list by listAt) is, to every reader
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

	for _, l := range [][]any{{}, {"a"}, {"a", 1.5, map[string]any{"k": "v"}}, nil} {
		block := [][]any{l}
		got, want := listAt(&block[0]), any(l)
		if !reflect.DeepEqual(got, want) || reflect.TypeOf(got) != reflect.TypeOf(l) || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%v: boxed %#v, want %#v", l, got, want)
		}
		if v, ok := got.([]any); !ok || len(v) != len(l) || (v == nil) != (l == nil) {
			t.Errorf("%v: type switch gave %v, %v", l, v, ok)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			t.Errorf("%v: JSON %s, want %s", l, a, b)
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

// TestSharedStrings checks that a push's long path lists are the parser's
// blocks, not copies, equal to the body's arrays and safe to append to; and
// that strings side by side in memory but not from one recorded block are
// never taken as one.
func TestSharedStrings(t *testing.T) {
	paths := make([]string, 3*minArrayBlock)
	for i := range paths {
		paths[i] = fmt.Sprintf("dir/file%02d.go", i)
	}
	short := paths[:minArrayBlock-1]
	list, _ := json.Marshal(paths)
	shortList, _ := json.Marshal(short)
	body := fmt.Sprintf(`{"object_kind":"push","ref":"refs/heads/main","before":"a","after":"b",`+
		`"commits":[{"id":"c1","added":%s,"modified":%s}]}`, list, shortList)
	ev, err := Decode(HeaderPush, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	c := ev.Push.Commits[0]
	if !reflect.DeepEqual(c.Added, paths) || !reflect.DeepEqual(c.Modified, short) {
		t.Fatalf("added %v, modified %v", c.Added, c.Modified)
	}
	bodyAdded := ev.Body()["commits"].([]any)[0].(map[string]any)["added"].([]any)
	if (*eface)(unsafe.Pointer(&bodyAdded[0])).data != unsafe.Pointer(&c.Added[0]) {
		t.Error("a long path list was copied, want the parser's block shared")
	}
	if cap(c.Added) != len(c.Added) {
		t.Errorf("shared list has capacity %d for %d paths: appending would write into the block", cap(c.Added), len(c.Added))
	}
	_ = append(c.Added, "x")
	if got := bodyAdded[len(bodyAdded)-1]; got != paths[len(paths)-1] {
		t.Errorf("after an append to Added, the body's last path is %q", got)
	}

	// Two blocks side by side: contiguous addresses, but not one block.
	block := []string{"a", "b", "c", "d"}
	two := []any{stringAt(&block[0]), stringAt(&block[1]), stringAt(&block[2]), stringAt(&block[3])}
	if _, ok := sharedStrings(two, stringBlocks{&block[0]: 2, &block[2]: 2}); ok {
		t.Error("sharedStrings took two recorded blocks of 2 as one of 4")
	}
	if _, ok := sharedStrings(two, nil); ok {
		t.Error("sharedStrings shared strings from no recorded block")
	}
	if got, ok := sharedStrings(two, stringBlocks{&block[0]: 4}); !ok || !reflect.DeepEqual(got, block) {
		t.Errorf("sharedStrings of a recorded block: %v, %v", got, ok)
	}
}
