package gitlab

import (
	"os"
	"path/filepath"
	"testing"
)

// walkSize is the size of the largest string (bytes), list or map of v.
func walkSize(v any) int {
	switch v := v.(type) {
	case string:
		return len(v)
	case []any:
		n := len(v)
		for _, x := range v {
			n = max(n, walkSize(x))
		}
		return n
	case map[string]any:
		n := len(v)
		for k, x := range v {
			n = max(n, len(k), walkSize(x))
		}
		return n
	}
	return 0
}

// TestDecodeSized checks that DecodeSized's size bounds every string, list and map
// of the decoded body (the engine's cost proof relies on it), and equals
// the largest when nothing is escaped.
func TestDecodeSized(t *testing.T) {
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	fixtures, err := filepath.Glob(filepath.Join("testdata", "*.json"))

	if err != nil || len(fixtures) == 0 {
		t.Fatalf("fixtures: %v %v", fixtures, err)
	}
	tests := []struct {
		name  string
		body  []byte
		exact bool
	}{
		{"escaped string", []byte(`{"a":"\u00e9\u00e9\ud83d\ude00\n"}`), false},
		{"long key", []byte(`{"abcdefghij":1}`), true},
		{"long list", []byte(`{"a":[1,2,3,4,5,6,7,8,9,10,11,12]}`), true},
		{"empty", []byte(`{}`), true},
	}
	for _, fx := range fixtures {
		body, err := os.ReadFile(fx)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct {
			name  string
			body  []byte
			exact bool
		}{filepath.Base(fx), body, false})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, got, err := d.DecodeSized("", tt.body)
			if err != nil {
				t.Fatal(err)
			}
			want := walkSize(ev.Body())
			if got < want || (tt.exact && got != want) {
				t.Errorf("DecodeSized: size %d; the largest value has size %d", got, want)
			}
		})
	}
}
