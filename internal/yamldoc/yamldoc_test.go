package yamldoc

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Doc
	}{
		{name: "empty", in: ""},
		{name: "one", in: "a: 1\n", want: []Doc{{0, []byte("a: 1\n")}}},
		{
			name: "empty and comment-only documents left out, positions kept",
			in:   "---\n# only a comment\n---\na: 1\n---\n\n---\n  # indented comment\n---\nb: 2 # trailing comment\n",
			want: []Doc{{1, []byte("a: 1\n")}, {4, []byte("b: 2 # trailing comment\n")}},
		},
		{name: "JSON", in: `{"a": 1}`, want: []Doc{{0, []byte("{\"a\": 1}\n")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Split(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("documents (-want +got):\n%s", diff)
			}
		})
	}
}
