package filewatch

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Sum is the SHA-256 of a Source's content.
type Sum [sha256.Size]byte

// Source is what a Value is loaded from: the content to hash and the
// directories to watch.
type Source interface {
	// Sum hashes the content; an error means it cannot be read now.
	Sum() (Sum, error)
	// Dirs are the directories whose changes may change Sum.
	Dirs() []string
}

// Files is a Source of the named files; symlinks are followed, so a file
// reached through a volume's "..data" symlink is seen changing when the
// symlink is swapped. A file that cannot be read fails Sum.
func Files(paths ...string) Source { return files(paths) }

type files []string

func (f files) Sum() (Sum, error) {
	h := sha256.New()
	for _, p := range f {
		b, err := os.ReadFile(p)
		if err != nil {
			return Sum{}, fmt.Errorf("reading %s: %w", p, err)
		}
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
	}
	return Sum(h.Sum(nil)), nil
}

func (f files) Dirs() []string {
	var dirs []string
	for _, p := range f {
		if d := filepath.Dir(p); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// Dir is a Source of the entries of dir whose names keep accepts (nil:
// every name not starting with "."). The names and contents are hashed in
// name order; an entry that cannot be read as a file (a directory, a
// dangling symlink mid-update) is left out. A dir that cannot be listed
// fails Sum.
func Dir(dir string, keep func(name string) bool) Source {
	if keep == nil {
		keep = func(name string) bool { return !strings.HasPrefix(name, ".") }
	}
	return dirSource{dir: dir, keep: keep}
}

type dirSource struct {
	dir  string
	keep func(string) bool
}

func (d dirSource) Sum() (Sum, error) {
	entries, err := os.ReadDir(d.dir) // sorted by name
	if err != nil {
		return Sum{}, fmt.Errorf("reading %s: %w", d.dir, err)
	}
	h := sha256.New()
	for _, e := range entries {
		n := e.Name()
		if !d.keep(n) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d.dir, n))
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return Sum(h.Sum(nil)), nil
}

func (d dirSource) Dirs() []string { return []string{d.dir} }
