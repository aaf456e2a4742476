package gitlabclient

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/ciel-ci/ciel/internal/gitlabtest"
)

const sha = "0123456789abcdef0123456789abcdef01234567"

// post sets one commit status through c; the fake GitLab records it.
func post(ctx context.Context, c *gitlab.Client) error {
	name := "ciel"
	_, _, err := c.Commits.SetCommitStatus("1", sha, &gitlab.SetCommitStatusOptions{State: gitlab.Running, Name: &name}, gitlab.WithContext(ctx))
	return err
}

// TestNewRefuses holds the cases of reporter/gitlabstatus's former
// TestOptions (the validation moved here) and those of the retries.
func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	const u = "https://gitlab.example.com"
	tests := []struct {
		name string
		url  string
		opts []Option
	}{
		{"no base URL", "", []Option{WithToken("t")}},
		{"no scheme", "gitlab.example.com", []Option{WithToken("t")}},
		{"no token", u, nil},
		{"blank token", u, []Option{WithToken(" ")}},
		{"token and file", u, []Option{WithToken("t"), WithTokenFile(empty)}},
		{"empty token file", u, []Option{WithTokenFile(empty)}},
		{"missing token file", u, []Option{WithTokenFile(filepath.Join(dir, "nope"))}},
		{"no token file name", u, []Option{WithTokenFile("")}},
		{"zero timeout", u, []Option{WithToken("t"), WithTimeout(0)}},
		{"negative retries", u, []Option{WithToken("t"), WithRetries(-1, time.Millisecond, time.Second)}},
		{"retry wait max below min", u, []Option{WithToken("t"), WithRetries(1, time.Second, time.Millisecond)}},
		{"CA file without certificates", u, []Option{WithToken("t"), WithCAFile(notPEM)}},
		{"missing CA file", u, []Option{WithToken("t"), WithCAFile(filepath.Join(dir, "nope"))}},
		{"CA file and transport", u, []Option{WithToken("t"), WithCAFile(notPEM), WithTransport(http.DefaultTransport)}},
		{"nil transport", u, []Option{WithToken("t"), WithTransport(nil)}},
		{"empty user agent", u, []Option{WithToken("t"), WithUserAgent("")}},
		{"nil logger", u, []Option{WithToken("t"), WithLogger(nil)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(context.Background(), tc.url, tc.opts...); err == nil {
				t.Error("New() succeeded, want an error")
			}
		})
	}
}

// TestTokenFileSwap rotates the token the way the kubelet updates a Secret
// volume (a new ..data symlink renamed over the old one): the next request
// carries the new token; a file that disappears fails the request.
func TestTokenFileSwap(t *testing.T) {
	dir := t.TempDir()
	swap := func(ts, token string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, ts), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ts, "token"), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	swap("..1", "first-token")
	path := filepath.Join(dir, "token")
	if err := os.Symlink(filepath.Join("..data", "token"), path); err != nil {
		t.Fatal(err)
	}
	srv := gitlabtest.NewTLSServer(t, "second-token")
	ctx := context.Background()
	c, err := New(ctx, srv.URL, WithTokenFile(path), WithCAFile(gitlabtest.CAFile(t, srv.Server)))
	if err != nil {
		t.Fatal(err)
	}
	if err := post(ctx, c); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("before the swap: %v, want 401", err)
	}
	swap("..2", "second-token")
	if err := post(ctx, c); err != nil {
		t.Fatalf("after the swap: %v", err)
	}
	os.Remove(filepath.Join(dir, "..data"))
	if err := post(ctx, c); err == nil || !strings.Contains(err.Error(), "token file") {
		t.Fatalf("missing token file: %v, want a token file error", err)
	}
}

func TestTLSAndRetries(t *testing.T) {
	tests := []struct {
		name      string
		ca        bool
		retries   int
		failFirst bool
		wantErr   string
		wantCalls int
	}{
		{"system roots refuse a private CA", false, 0, false, "certificate", 0},
		{"CA file trusts it", true, 0, false, "", 1},
		{"no retry by default", true, 0, true, "503", 1},
		{"a retry heals a 503", true, 1, true, "", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := gitlabtest.NewTLSServer(t, "tok")
			if tc.failFirst {
				srv.FailNext(http.StatusServiceUnavailable)
			}
			opts := []Option{WithToken("tok"), WithUserAgent("ciel-test")}
			if tc.ca {
				opts = append(opts, WithCAFile(gitlabtest.CAFile(t, srv.Server)))
			}
			if tc.retries > 0 {
				opts = append(opts, WithRetries(tc.retries, time.Millisecond, 5*time.Millisecond))
			}
			c, err := New(context.Background(), srv.URL+"/", opts...)
			if err != nil {
				t.Fatal(err)
			}
			err = post(context.Background(), c)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("post: %v, want error %q", err, tc.wantErr)
			}
			if n := len(srv.Calls()); n != tc.wantCalls {
				t.Errorf("%d calls, want %d", n, tc.wantCalls)
			}
		})
	}
}

// TestRedirects: a redirect (307, which replays the POST and its headers)
// is followed on the same host and refused to another one, which never
// sees the token.
func TestRedirects(t *testing.T) {
	gl := gitlabtest.NewServer(t, "tok")
	tests := []struct {
		name      string
		to        func(front string) string
		wantErr   bool
		wantCalls int
	}{
		{"same host followed", func(front string) string { return front + "/moved" }, false, 1},
		{"other host refused", func(string) string { return gl.URL }, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(gl.Calls())
			var front *httptest.Server
			front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if p, ok := strings.CutPrefix(r.URL.Path, "/moved"); ok {
					r.URL.Path = p
					gl.Config.Handler.ServeHTTP(w, r) // the same host serving GitLab
					return
				}
				http.Redirect(w, r, tc.to(front.URL)+r.URL.Path, http.StatusTemporaryRedirect)
			}))
			defer front.Close()
			c, err := New(context.Background(), front.URL, WithToken("tok"))
			if err != nil {
				t.Fatal(err)
			}
			err = post(context.Background(), c)
			if tc.wantErr != (err != nil) || err != nil && !strings.Contains(err.Error(), "redirect") {
				t.Errorf("post: %v, want a refused redirect: %v", err, tc.wantErr)
			}
			if n := len(gl.Calls()) - before; n != tc.wantCalls {
				t.Errorf("GitLab received %d calls, want %d", n, tc.wantCalls)
			}
		})
	}
}
