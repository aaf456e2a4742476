package filewatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ciel-ci/ciel/internal/waitfor"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// loadFile loads the trimmed content of path; "bad" fails to load.
func loadFile(path string, loads *atomic.Int32) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		loads.Add(1)
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		if s := strings.TrimSpace(string(b)); s != "bad" {
			return s, nil
		}
		return "", errors.New("bad content")
	}
}

// volume lays dir out as the kubelet does for a ConfigMap or Secret volume:
// dir/name -> ..data/name, ..data -> ..<ts>; swap writes a new ..<ts> and
// renames a new ..data symlink over the old one (atomic).
type volume struct {
	t   *testing.T
	dir string
	n   int
}

func (v *volume) swap(name, content string) {
	v.t.Helper()
	v.n++
	ts := filepath.Join(v.dir, "..ts"+strings.Repeat("x", v.n))
	if err := os.Mkdir(ts, 0o700); err != nil {
		v.t.Fatal(err)
	}
	write(v.t, filepath.Join(ts, name), content)
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	link := filepath.Join(v.dir, name)
	if _, err := os.Lstat(link); err != nil {
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			v.t.Fatal(err)
		}
	}
}

func TestReload(t *testing.T) {
	tests := []struct {
		name string
		// change is applied between the first load ("one") and Reload.
		change      func(t *testing.T, dir string)
		wantChanged bool
		wantErr     bool
		want        string
	}{
		{"new content reloads", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "f"), "two") }, true, false, "two"},
		{"same content does not reload", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "f"), "one")
			os.Chtimes(filepath.Join(dir, "f"), time.Now().Add(time.Hour), time.Now().Add(time.Hour))
		}, false, false, "one"},
		{"failed load keeps the old value", func(t *testing.T, dir string) { write(t, filepath.Join(dir, "f"), "bad") }, false, true, "one"},
		{"missing file keeps the old value", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "f")) }, false, true, "one"},
		{"replaced by rename reloads", func(t *testing.T, dir string) {
			write(t, filepath.Join(dir, "f.new"), "three")
			if err := os.Rename(filepath.Join(dir, "f.new"), filepath.Join(dir, "f")); err != nil {
				t.Fatal(err)
			}
		}, true, false, "three"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			write(t, path, "one")
			var loads atomic.Int32
			var seen []error
			v, err := New(context.Background(), Files(path), loadFile(path, &loads), WithOnLoad(func(err error) { seen = append(seen, err) }))
			if err != nil {
				t.Fatal(err)
			}
			tc.change(t, dir)
			changed, err := v.Reload(context.Background())
			if changed != tc.wantChanged || (err != nil) != tc.wantErr {
				t.Errorf("Reload() = %v, %v; want changed %v, error %v", changed, err, tc.wantChanged, tc.wantErr)
			}
			if got, ok := v.Get(); !ok || got != tc.want {
				t.Errorf("Get() = %q, %v; want %q", got, ok, tc.want)
			}
			if (v.Err() != nil) != tc.wantErr {
				t.Errorf("Err() = %v", v.Err())
			}
			wantSeen := 1 // the first load
			if tc.wantChanged || tc.wantErr {
				wantSeen++
			}
			if len(seen) != wantSeen {
				t.Errorf("load callback called %d times, want %d", len(seen), wantSeen)
			}
		})
	}
}

func TestFirstLoadFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	write(t, path, "bad")
	var loads atomic.Int32
	v, err := New(context.Background(), Files(path), loadFile(path, &loads))
	if err == nil || v == nil {
		t.Fatalf("New() = %v, %v; want a usable Value and the error", v, err)
	}
	if _, ok := v.Get(); ok {
		t.Error("a value serves after a failed first load")
	}
	write(t, path, "good")
	if changed, err := v.Reload(context.Background()); !changed || err != nil {
		t.Fatalf("Reload() = %v, %v", changed, err)
	}
	if got, _ := v.Get(); got != "good" {
		t.Errorf("got %q", got)
	}
	if _, err := New[string](context.Background(), nil, nil); err == nil {
		t.Error("New without a source accepted")
	}
}

func TestDirSource(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), "a")
	keep := func(n string) bool { return strings.HasSuffix(n, ".yaml") }
	src := Dir(dir, keep)
	sum := func() Sum {
		s, err := src.Sum()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := sum()
	write(t, filepath.Join(dir, "notes.txt"), "ignored")
	if sum() != first {
		t.Error("a filtered-out file changed the sum")
	}
	write(t, filepath.Join(dir, "b.yaml"), "b")
	if sum() == first {
		t.Error("a new file did not change the sum")
	}
	if _, err := Dir(filepath.Join(dir, "none"), nil).Sum(); err == nil {
		t.Error("a missing directory summed")
	}
	if d := Files(filepath.Join(dir, "x"), filepath.Join(dir, "y")).Dirs(); len(d) != 1 || d[0] != dir {
		t.Errorf("Dirs() = %v", d)
	}
}

// TestRun follows real directories with Run: a kubelet-style ..data swap
// is picked up from its notification, and with notifications off the
// periodic rescan catches the change (a missed event).
func TestRun(t *testing.T) {
	tests := []struct {
		name string
		opts []Option
	}{
		{"notification", []Option{WithRescanInterval(time.Hour), WithDebounce(10 * time.Millisecond)}},
		{"rescan catches a missed event", []Option{WithNotify(false), WithRescanInterval(20 * time.Millisecond)}},
	}
	var loaded atomic.Int32 // the load callback of New still runs under Run's own options
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			vol := &volume{t: t, dir: dir}
			vol.swap("token", "one")
			path := filepath.Join(dir, "token")
			var loads atomic.Int32
			loaded.Store(0)
			v, err := New(context.Background(), Files(path), loadFile(path, &loads), WithOnLoad(func(error) { loaded.Add(1) }))
			if err != nil {
				t.Fatal(err)
			}
			if err := v.Run(context.Background(), WithOnLoad(func(error) {})); err == nil {
				t.Error("Run accepted WithOnLoad")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- v.Run(ctx, tc.opts...) }()
			vol.swap("token", "two")
			waitfor.True(t, 10*time.Second, "the swapped content", func() bool { got, _ := v.Get(); return got == "two" })
			// A failed load on a later swap keeps "two".
			vol.swap("token", "bad")
			waitfor.True(t, 10*time.Second, "a check of the bad content", func() bool { return v.Err() != nil })
			if got, _ := v.Get(); got != "two" {
				t.Errorf("after a failed load: %q, want two", got)
			}
			if loaded.Load() < 3 {
				t.Errorf("load callback called %d times, want at least 3 (first, two, bad)", loaded.Load())
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v", err)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
	}{
		{"nil logger", WithLogger(nil)},
		{"zero rescan", WithRescanInterval(0)},
		{"negative debounce", WithDebounce(-1)},
		{"nil callback", WithOnLoad(nil)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Watch(context.Background(), nil, func(context.Context) {}, tc.opt); err == nil {
				t.Error("Watch accepted the option")
			}
			if tc.name != "nil callback" && Validate(tc.opt) == nil {
				t.Error("Validate accepted the option")
			}
		})
	}
	if err := Watch(context.Background(), nil, func(context.Context) {}, WithOnLoad(func(error) {})); err == nil {
		t.Error("Watch accepted WithOnLoad")
	}
}
