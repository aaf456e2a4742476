package command

import (
	"bytes"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ciel-ci/ciel/images/ociindex"
	"github.com/ciel-ci/ciel/images/platform"
)

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// writeTable writes rows as aligned columns, without trailing spaces.
func writeTable(w io.Writer, rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		if _, err := io.WriteString(tw, strings.Join(r, "\t")+"\n"); err != nil {
			return err
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var out strings.Builder
	for _, line := range strings.SplitAfter(buf.String(), "\n") {
		if line == "" {
			continue
		}
		out.WriteString(strings.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := io.WriteString(w, out.String())
	return err
}

// revisionFlag checks --revision: empty (no check) or a full commit SHA.
func revisionFlag(rev string) error {
	if rev == "" {
		return nil
	}
	if err := ociindex.CheckCommit(rev); err != nil {
		return usagef("--revision: %v", err)
	}
	return nil
}

// requiredFlag parses --require-platforms of `ciel index create` and `ciel
// release promote`: platforms as written (platform.ParseExactList).
func requiredFlag(s string) ([]v1.Platform, error) {
	ps, err := platform.ParseExactList(s)
	if err != nil {
		return nil, usagef("--require-platforms: %v", err)
	}
	return ps, nil
}
