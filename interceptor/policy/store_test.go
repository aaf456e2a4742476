package policy

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder counts a Store's loads as the interceptor's metrics do.
type recorder struct {
	mu       sync.Mutex
	ok, fail int
	n        int
}

func (r *recorder) PolicyReload(ok bool, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.ok++
		r.n = n
		return
	}
	r.fail++
}

func TestPolicyHotReload(t *testing.T) {
	eng := newEngine(t)
	dir := t.TempDir()
	write := func(name, content string) { writeFile(t, dir, name, content) }
	write("a.yaml", "name: a\nfilter: 'true'\n")
	m := &recorder{}
	p, err := NewStore(eng, dir, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	first := p.Set()
	if changed, err := p.Reload(); changed || err != nil {
		t.Errorf("unchanged dir reloaded: %v %v", changed, err)
	}
	write("b.yaml", "name: b\nfilter: 'body.ref =='\n")
	if _, err := p.Reload(); err == nil || p.Set() != first || !strings.Contains(p.LastError(), "b.yaml") {
		t.Errorf("a broken set replaced the serving one: %v", err)
	}
	write("b.yaml", "name: b\nfilter: 'false'\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx, 20*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := p.Set().Get("b"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fixed set was not loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.LastError() != "" {
		t.Errorf("last error %q after a good load", p.LastError())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ok != 2 || m.fail != 1 || m.n != 2 {
		t.Errorf("recorded %d loads, %d failures, %d policies; want 2, 1, 2", m.ok, m.fail, m.n)
	}
}

func TestIsPolicyFile(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"build.yaml", true},
		{"build.yml", true},
		{".hidden.yaml", false},
		{"..data", false},
		{"kustomization.yaml", false},
		{"kustomization.yml", false},
		{"Kustomization", false},
		{"notes.md", false},
		{"yaml", false},
	}
	for _, tt := range tests {
		if got := IsPolicyFile(tt.name); got != tt.want {
			t.Errorf("IsPolicyFile(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
