package registryclient

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestPingShare checks which requests pingShare answers from the first
// answer of the registry and which always go to the registry.
func TestPingShare(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		method    string
		path      string
		auth      string
		wantSent  int32 // requests the registry sees for two identical ones
		wantChall bool
	}{
		{name: "401 challenge shared", status: http.StatusUnauthorized, method: http.MethodGet, path: "/v2/", wantSent: 1, wantChall: true},
		{name: "200 shared", status: http.StatusOK, method: http.MethodGet, path: "/v2/", wantSent: 1},
		{name: "server error asked again", status: http.StatusServiceUnavailable, method: http.MethodGet, path: "/v2/", wantSent: 2},
		{name: "authenticated request not shared", status: http.StatusOK, method: http.MethodGet, path: "/v2/", auth: "Bearer x", wantSent: 2},
		{name: "other path not shared", status: http.StatusOK, method: http.MethodGet, path: "/v2/a/manifests/v1", wantSent: 2},
		{name: "HEAD not shared", status: http.StatusOK, method: http.MethodHead, path: "/v2/", wantSent: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sent atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				sent.Add(1)
				if tt.status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="https://auth.example/token",service="reg"`)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, "{}")
			}))
			defer srv.Close()
			ps := newPingShare(http.DefaultTransport)
			for i := range 2 {
				req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if tt.auth != "" {
					req.Header.Set("Authorization", tt.auth)
				}
				resp, err := ps.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode != tt.status {
					t.Errorf("request %d: status %d, want %d", i, resp.StatusCode, tt.status)
				}
				if tt.method == http.MethodGet && string(body) != "{}" {
					t.Errorf("request %d: body %q, want {}", i, body)
				}
				if got := resp.Header.Get("WWW-Authenticate") != ""; got != tt.wantChall {
					t.Errorf("request %d: challenge present %v, want %v", i, got, tt.wantChall)
				}
			}
			if got := sent.Load(); got != tt.wantSent {
				t.Errorf("registry saw %d requests, want %d", got, tt.wantSent)
			}
		})
	}
}
