package httpredirect

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestSameHost runs a real client against two loopback servers: the first
// redirects to itself (followed) or to the second (refused, which then never
// sees the token).
func TestSameHost(t *testing.T) {
	var leaked atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PRIVATE-TOKEN") != "" {
			leaked.Add(1)
		}
	}))
	defer other.Close()
	var home *httptest.Server
	home = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		case "/here":
			http.Redirect(w, r, home.URL+"/ok", http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer home.Close()
	c := &http.Client{CheckRedirect: SameHost}
	get := func(path string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, home.URL+path, nil)
		req.Header.Set("PRIVATE-TOKEN", "glpat-secret")
		return c.Do(req)
	}
	if resp, err := get("/here"); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Errorf("same-host redirect: %v %v", resp, err)
	}
	if _, err := get("/away"); !errors.Is(err, ErrCrossHost) {
		t.Errorf("cross-host redirect: %v, want ErrCrossHost", err)
	}
	if _, err := get("/loop"); err == nil {
		t.Error("a redirect loop was followed forever")
	}
	if leaked.Load() != 0 {
		t.Error("the token reached the other host")
	}
}
