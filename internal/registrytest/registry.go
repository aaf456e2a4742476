// Package registrytest runs a real registry for integration tests: the
// docker-registry program (CNCF Distribution 2.8, Debian package
// "docker-registry") on a free loopback port with filesystem storage in a
// temporary directory, optionally behind TLS with a freshly made CA and with
// htpasswd authentication. Proxy puts a request-counting, fault-injecting
// reverse proxy in front of it.
//
// Tests that call Start skip with a clear message when the program is
// missing, unless CIEL_REQUIRE_REAL=1, in which case they fail.
package registrytest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Program is the registry executable looked up in $PATH; CIEL_DOCKER_REGISTRY
// overrides it with a path.
const Program = "docker-registry"

type config struct {
	tls      bool
	user     string
	password string
}

// Option configures Start.
type Option func(*config)

// WithTLS serves HTTPS with a certificate for 127.0.0.1 and localhost signed
// by a CA made for this registry (Registry.CAFile).
func WithTLS() Option { return func(c *config) { c.tls = true } }

// WithBasicAuth requires HTTP basic authentication (htpasswd, bcrypt).
func WithBasicAuth(user, password string) Option {
	return func(c *config) { c.user, c.password = user, password }
}

// Registry is a running docker-registry process.
type Registry struct {
	// Host is "127.0.0.1:PORT", usable as the registry part of references.
	Host string
	// Dir is the storage root directory.
	Dir string
	// CAFile is the PEM file of the CA that signed the server certificate
	// (WithTLS only).
	CAFile string
	// LogFile receives the registry's own output.
	LogFile string

	scheme string
	caPool *x509.CertPool
}

// URL returns the base URL, e.g. "http://127.0.0.1:5000".
func (r *Registry) URL() string { return r.scheme + "://" + r.Host }

// Client returns an HTTP client that trusts the registry's certificate.
func (r *Registry) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.caPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: r.caPool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Binary returns the registry program's path, skipping the test when it is
// missing (failing instead when CIEL_REQUIRE_REAL=1).
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CIEL_DOCKER_REGISTRY"); p != "" {
		return p
	}
	p, err := exec.LookPath(Program)
	if err == nil {
		return p
	}
	msg := "the real registry program " + Program + " is not installed (Debian: apt-get install docker-registry)"
	if os.Getenv("CIEL_REQUIRE_REAL") == "1" {
		t.Fatalf("%s, and CIEL_REQUIRE_REAL=1 requires integration tests to run", msg)
	}
	t.Skipf("skipping: %s; set CIEL_REQUIRE_REAL=1 to make this a failure", msg)
	return ""
}

// Start starts a registry and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	bin := Binary(t)
	var c config
	for _, o := range opts {
		o(&c)
	}
	dir := t.TempDir()
	r := &Registry{Dir: filepath.Join(dir, "storage"), LogFile: filepath.Join(dir, "registry.log"), scheme: "http"}
	var extra strings.Builder
	if c.tls {
		r.scheme = "https"
		certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
		r.CAFile = filepath.Join(dir, "ca.crt")
		pool, err := writeCertificates(r.CAFile, certFile, keyFile)
		if err != nil {
			t.Fatalf("making test certificates: %v", err)
		}
		r.caPool = pool
		fmt.Fprintf(&extra, "  tls:\n    certificate: %s\n    key: %s\n", certFile, keyFile)
	}
	var auth string
	if c.user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("hashing test password: %v", err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(c.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: ciel-test\n    path: %s\n", htpasswd)
	}

	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: ciel-registrytest
%s%s`, r.Dir, r.Host, extra.String(), auth)
		cfgFile := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		lastErr = r.run(t, bin, cfgFile)
		if lastErr == nil {
			return r
		}
	}
	t.Fatalf("starting %s: %v", bin, lastErr)
	return nil
}

// run starts the process and waits until /v2/ answers.
func (r *Registry) run(t testing.TB, bin, cfgFile string) error {
	logf, err := os.OpenFile(r.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", cfgFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()

	client := r.Client()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("registry exited before it was ready (%v); its log:\n%s", err, r.tail())
		default:
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("registry not ready after 20s (last error %v); its log:\n%s", err, r.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("registry log (%s):\n%s", r.LogFile, r.tail())
		}
	})
	return nil
}

// tail returns the end of the registry's log.
func (r *Registry) tail() string {
	b, err := os.ReadFile(r.LogFile)
	if err != nil {
		return err.Error()
	}
	if len(b) > 8192 {
		b = b[len(b)-8192:]
	}
	return string(bytes.TrimSpace(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("listener has no TCP address")
	}
	return addr.Port, nil
}
