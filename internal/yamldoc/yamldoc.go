// Package yamldoc splits a multi-document YAML (or JSON) stream into its
// documents, the way kubectl reads a manifest file: the tests of the
// manifests and the end-to-end harness, which applies the release, read
// YAML with it.
package yamldoc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// Doc is one document of a stream and its position in it (counting the
// empty documents left out).
type Doc struct {
	Index int
	Raw   []byte
}

// Split returns the documents of r that hold more than comments and white
// space.
func Split(r io.Reader) ([]Doc, error) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	var docs []Doc
	for i := 0; ; i++ {
		raw, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading YAML document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(content(raw))) > 0 {
			docs = append(docs, Doc{Index: i, Raw: raw})
		}
	}
}

// content drops the lines that are only a comment, and the document
// marker the first document keeps.
func content(raw []byte) []byte {
	var out []byte
	for _, line := range strings.SplitAfter(string(raw), "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && l != "---" {
			out = append(out, line...)
		}
	}
	return out
}
