package registryclient

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ciel-ci/ciel/internal/registrytest"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		opts    []Option
		wantErr string
	}{
		{name: "defaults", opts: nil},
		{name: "nil keychain", opts: []Option{WithKeychain(nil)}, wantErr: "keychain"},
		{name: "empty user agent", opts: []Option{WithUserAgent(" ")}, wantErr: "user agent"},
		{name: "zero attempts", opts: []Option{WithRetry(0, time.Second)}, wantErr: "attempts"},
		{name: "zero delay", opts: []Option{WithRetry(3, 0)}, wantErr: "delay"},
		{name: "zero timeout", opts: []Option{WithResponseTimeout(0)}, wantErr: "timeout"},
		{name: "zero jobs", opts: []Option{WithJobs(0)}, wantErr: "jobs"},
		{name: "nil transport", opts: []Option{WithTransport(nil)}, wantErr: "transport"},
		{name: "nil logger", opts: []Option{WithLogger(nil)}, wantErr: "logger"},
		{name: "missing CA file", opts: []Option{WithCAFile(filepath.Join(dir, "nope.pem"))}, wantErr: "reading CA file"},
		{name: "CA file without certificates", opts: []Option{WithCAFile(notPEM)}, wantErr: "no PEM certificate"},
		{name: "CA file and custom transport", opts: []Option{WithCAFile(notPEM), WithTransport(http.DefaultTransport)}, wantErr: "custom transport"},
		{name: "timeout and custom transport", opts: []Option{WithResponseTimeout(time.Second), WithTransport(http.DefaultTransport)}, wantErr: "custom transport"},
		{name: "empty CA file path is ignored", opts: []Option{WithCAFile("")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts...)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParse(t *testing.T) {
	plain, err := New()
	if err != nil {
		t.Fatal(err)
	}
	insecure, err := New(WithInsecure(true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.ParseTag("reg.example.com/app"); err == nil || !strings.Contains(err.Error(), "no tag") {
		t.Errorf("ParseTag without a tag: err = %v, want 'no tag'", err)
	}
	tag, err := plain.ParseTag("reg.example.com/app:v1")
	if err != nil || tag.TagStr() != "v1" {
		t.Errorf("ParseTag = %v, %v", tag, err)
	}
	if _, err := plain.ParseTag("reg.example.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"); err == nil {
		t.Error("ParseTag accepted a digest")
	}
	if _, err := plain.ParseReference("Bad Ref"); err == nil {
		t.Error("ParseReference accepted garbage")
	}
	if _, err := plain.ParseRepository("reg.example.com/app:v1"); err == nil {
		t.Error("ParseRepository accepted a tag")
	}
	for _, c := range []struct {
		client *Client
		want   string
	}{{plain, "https"}, {insecure, "http"}} {
		ref, err := c.client.ParseReference("reg.example.com/app:v1")
		if err != nil {
			t.Fatal(err)
		}
		if got := ref.Context().Scheme(); got != c.want {
			t.Errorf("scheme = %s, want %s", got, c.want)
		}
	}
}

type tempErr struct{}

func (tempErr) Error() string   { return "temporary" }
func (tempErr) Temporary() bool { return true }

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return false }

var _ net.Error = timeoutErr{}

func TestShouldRetry(t *testing.T) {
	var logs bytes.Buffer
	c, err := New(WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"500", &transport.Error{StatusCode: 500}, true},
		{"429", &transport.Error{StatusCode: 429}, true},
		{"404", &transport.Error{StatusCode: 404}, false},
		{"401", &transport.Error{StatusCode: 401}, false},
		{"connection reset", &url.Error{Op: "Get", URL: "x", Err: syscall.ECONNRESET}, true},
		{"EOF", &url.Error{Op: "Get", URL: "x", Err: io.EOF}, true},
		{"unexpected EOF", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"broken pipe", syscall.EPIPE, true},
		{"temporary", tempErr{}, true},
		{"timeout", &url.Error{Op: "Get", URL: "x", Err: timeoutErr{}}, true},
		{"cancelled", &url.Error{Op: "Get", URL: "x", Err: context.Canceled}, false},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{"other", errors.New("boom"), false},
	}
	retried := 0
	for _, tt := range tests {
		if got := c.shouldRetry(tt.err); got != tt.want {
			t.Errorf("shouldRetry(%s) = %v, want %v", tt.name, got, tt.want)
		}
		if tt.want {
			retried++
		}
	}
	if n := strings.Count(logs.String(), "retrying registry request"); n != retried {
		t.Errorf("%d retry warnings logged, want %d:\n%s", n, retried, logs.String())
	}
}

// dockerConfig writes a docker config.json with credentials for host and
// points DOCKER_CONFIG (and HOME) at it, as Kaniko's /kaniko/.docker does.
func dockerConfig(t *testing.T, host, user, password string) {
	t.Helper()
	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, auth)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("DOCKER_CONFIG", dir)
}

func TestRealTLSWithCAFileAndDockerConfig(t *testing.T) {
	reg := registrytest.Start(t, registrytest.WithTLS(), registrytest.WithBasicAuth("kaniko", "pa55"))
	dockerConfig(t, reg.Host, "kaniko", "pa55")
	ctx := context.Background()

	c, err := New(WithCAFile(reg.CAFile), WithRetry(2, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := c.ParseReference(reg.Host + "/team/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, c.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("pushing with the CA file and docker config: %v", err)
	}
	d, err := remote.Head(ref, c.RemoteOptions(ctx)...)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := img.Digest(); d.Digest != want {
		t.Errorf("digest %s, want %s", d.Digest, want)
	}

	// Without the CA, TLS verification fails (it is never switched off).
	noCA, err := New(WithRetry(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(ref, noCA.RemoteOptions(ctx)...)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: err = %v, want a certificate error", err)
	}

	// Without credentials the registry refuses.
	anon, err := New(WithCAFile(reg.CAFile), WithKeychain(authn.NewMultiKeychain()), WithRetry(1, time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(ref, anon.RemoteOptions(ctx)...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous: err = %v, want 401", err)
	}
}

func TestRealUserAgentAndRetries(t *testing.T) {
	reg := registrytest.Start(t)
	proxy := registrytest.NewProxy(t, reg)
	var logs bytes.Buffer
	c, err := New(WithUserAgent("ciel-test/1"), WithRetry(3, time.Millisecond),
		WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ref := registrytest.Ref(t, proxy.Host+"/team/app:v1")
	img := registrytest.RandomImages(t, "linux/amd64")[0]
	proxy.Inject(registrytest.Fault{Method: http.MethodPut, Kind: registrytest.KindManifest, Status: 502, Times: 2})
	if err := remote.Write(ref, img, c.RemoteOptions(ctx)...); err != nil {
		t.Fatalf("push with two 502s on the manifest PUT: %v\n%s", err, proxy.Log())
	}
	if n := strings.Count(logs.String(), "retrying registry request"); n != 2 {
		t.Errorf("%d retries logged, want 2:\n%s", n, logs.String())
	}

	// Three attempts in all: a third failure is final.
	proxy.Reset()
	proxy.Inject(registrytest.Fault{Method: http.MethodHead, Kind: registrytest.KindManifest, Status: 503, Times: 3})
	_, err = remote.Head(ref, c.RemoteOptions(ctx)...)
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want the final 503", err)
	}
	if n := proxy.Count(http.MethodHead, registrytest.KindManifest); n != 3 {
		t.Errorf("%d HEADs, want 3 attempts\n%s", n, proxy.Log())
	}
}

func TestUserAgentHeader(t *testing.T) {
	got := make(chan string, 1)
	srv := http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("User-Agent"):
		default:
		}
		w.WriteHeader(http.StatusOK)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	c, err := New(WithUserAgent("ciel/v9"))
	if err != nil {
		t.Fatal(err)
	}
	ref := registrytest.Ref(t, l.Addr().String()+"/app:v1")
	// The fake answers 200 without manifest headers: only the header sent
	// matters here.
	_, _ = remote.Head(ref, c.RemoteOptions(context.Background())...)
	if ua := <-got; !strings.HasPrefix(ua, "ciel/v9") {
		t.Errorf("User-Agent = %q, want it to start with ciel/v9", ua)
	}
}
