package registrytest

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestStartPlainHTTP(t *testing.T) {
	r := Start(t)
	resp, _ := get(t, r.Client(), r.URL()+"/v2/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Docker-Distribution-Api-Version"); got != "registry/2.0" {
		t.Errorf("Docker-Distribution-Api-Version = %q, want registry/2.0", got)
	}
}

func TestStartTLSWithBasicAuth(t *testing.T) {
	r := Start(t, WithTLS(), WithBasicAuth("ciel", "s3cret"))
	if !strings.HasPrefix(r.URL(), "https://") || r.CAFile == "" {
		t.Fatalf("URL = %s, CAFile = %q; want https and a CA file", r.URL(), r.CAFile)
	}
	resp, _ := get(t, r.Client(), r.URL()+"/v2/")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v2/ = %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, r.URL()+"/v2/", nil)
	req.SetBasicAuth("ciel", "s3cret")
	resp2, err := r.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusOK {
		t.Fatalf("authenticated GET /v2/ = %d, want 200", resp2.StatusCode)
	}
	// A client without the CA must not get through.
	if _, err := http.Get(r.URL() + "/v2/"); err == nil {
		t.Fatal("a client without the test CA trusted the registry's certificate")
	}
}

func TestProxyCountsAndFaults(t *testing.T) {
	r := Start(t)
	p := NewProxy(t, r)
	base := "http://" + p.Host
	p.Inject(Fault{Method: http.MethodGet, Kind: KindTags, Status: 500, Times: 2})
	p.Inject(Fault{Kind: KindPing, Status: 429, RetryAfter: "1", Times: 1})

	var statuses []int
	for range 3 {
		resp, _ := get(t, http.DefaultClient, base+"/v2/x/tags/list")
		statuses = append(statuses, resp.StatusCode)
	}
	resp, _ := get(t, http.DefaultClient, base+"/v2/")
	if resp.Header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", resp.Header.Get("Retry-After"))
	}
	statuses = append(statuses, resp.StatusCode)
	resp, _ = get(t, http.DefaultClient, base+"/v2/")
	statuses = append(statuses, resp.StatusCode)
	// Two injected 500s, then the real registry's 404 for an unknown
	// repository; one injected 429, then the real 200.
	if diff := cmp.Diff([]int{500, 500, 404, 429, 200}, statuses); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	want := map[string]int{"GET tags": 3, "GET ping": 2}
	if diff := cmp.Diff(want, p.Counts()); diff != "" {
		t.Errorf("counts (-want +got):\n%s\n%s", diff, p.Log())
	}
	if injected := p.Injected(); injected != 3 {
		t.Errorf("injected = %d, want 3", injected)
	}
	if w := p.Writes(); len(w) != 0 {
		t.Errorf("writes = %v, want none: GET requests only", w)
	}

	p.Reset()
	p.Inject(Fault{Kind: KindPing, Drop: true, Times: 1})
	// A fresh connection: Go's client transparently retries a request that
	// failed on a reused keep-alive connection.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if _, err := fresh.Get(base + "/v2/"); err == nil {
		t.Error("a dropped connection returned a response")
	}
	if got := p.Requests(); len(got) != 1 || got[0].Status != 0 || !got[0].Injected {
		t.Errorf("requests after a drop = %v, want one dropped request", got)
	}

	p.Reset()
	put, err := http.NewRequest(http.MethodPut, base+"/v2/x/manifests/latest", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(put); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	if w := p.Writes(); len(w) != 1 || w[0].Method != http.MethodPut || p.Injected() != 0 {
		t.Errorf("writes = %v, injected %d; want the one PUT, not injected", w, p.Injected())
	}
}

func TestKindOf(t *testing.T) {
	tests := map[string]Kind{
		"/v2/":                           KindPing,
		"/v2/a/b/manifests/latest":       KindManifest,
		"/v2/a/blobs/sha256:00":          KindBlob,
		"/v2/a/blobs/uploads/":           KindUpload,
		"/v2/a/blobs/uploads/uuid-1":     KindUpload,
		"/v2/a/tags/list":                KindTags,
		"/v2/a/referrers/sha256:00":      KindReferrers,
		"/metrics":                       KindOther,
		fmt.Sprintf("/v2/%s/x", "a/b/c"): KindOther,
	}
	for path, want := range tests {
		if got := KindOf(path); got != want {
			t.Errorf("KindOf(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestRequestIsMount(t *testing.T) {
	tests := []struct {
		r    Request
		want bool
	}{
		{Request{Method: "POST", Kind: KindUpload, Query: "from=a&mount=sha256%3A00"}, true},
		{Request{Method: "POST", Kind: KindUpload}, false},
		{Request{Method: "POST", Kind: KindUpload, Query: "mount=sha256%3A00"}, false},
		{Request{Method: "PUT", Kind: KindUpload, Query: "from=a&mount=sha256%3A00"}, false},
	}
	for _, tt := range tests {
		if got := tt.r.IsMount(); got != tt.want {
			t.Errorf("%v.IsMount() = %v, want %v", tt.r, got, tt.want)
		}
	}
}
