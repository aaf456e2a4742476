package command

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"

	"github.com/ciel-ci/ciel/internal/interceptortest"
	"github.com/ciel-ci/ciel/internal/registrytest"
)

// startBinary builds and starts the real interceptor; it returns the base
// URL it printed and the process.
func startBinary(t *testing.T, args ...string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	return startBinaryEnv(t, nil, args...)
}

// startBinaryEnv is startBinary with more environment variables.
func startBinaryEnv(t *testing.T, env []string, args ...string) (string, *exec.Cmd, *bytes.Buffer) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "interceptor")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ciel-ci/ciel/cmd/interceptor").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var logs bytes.Buffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("no address printed: %v\n%s", err, logs.String())
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "listening on ")), cmd, &logs
}

// webhookSecretDir writes the Secret gitlab-webhook (key token: s3cret) for
// local mode's --secret-dir and returns that directory.
func webhookSecretDir(t *testing.T, dir string) string {
	t.Helper()
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "gitlab-webhook"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "gitlab-webhook", "token"), []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secrets
}

// startLocalTLS starts the binary in local mode over TLS (a self-signed
// certificate) with the shipped policies and the webhook token Secret,
// plus args; it returns what startBinary does and the pool trusting the
// certificate.
func startLocalTLS(t *testing.T, args ...string) (string, *exec.Cmd, *bytes.Buffer, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	secrets := webhookSecretDir(t, dir)
	certFile, keyFile, pool := registrytest.Certificates(t, dir)
	base, cmd, logs := startBinary(t, append([]string{"--local", "--http-addr", "127.0.0.1:0", "--policies", "../../../policies",
		"--secret-dir", secrets, "--tls-cert-file", certFile, "--tls-key-file", keyFile}, args...)...)
	return base, cmd, logs, pool
}

// postInterceptor posts an InterceptorRequest to the binary's /gitlab and
// decodes its answer.
func postInterceptor(t *testing.T, client *http.Client, base string, req triggersv1.InterceptorRequest) triggersv1.InterceptorResponse {
	t.Helper()
	return interceptortest.Post(t, client, base, req)
}

// waitExit waits for the binary to exit cleanly (after a SIGTERM) within d.
func waitExit(t *testing.T, cmd *exec.Cmd, logs *bytes.Buffer, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v\n%s", err, logs)
		}
	case <-time.After(d):
		t.Fatalf("no exit within %s of SIGTERM", d)
	}
}

func TestRealBinaryOverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	base, cmd, logs, pool := startLocalTLS(t, "--log-format", "text")
	if !strings.HasPrefix(base, "https://") {
		t.Fatalf("address %q, want https", base)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	get := func(path string) (int, string) { return interceptortest.Get(t, client, base+path) }
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("/readyz %d %s\n%s", code, body, logs)
	}
	body, _ := os.ReadFile("../../../interceptor/gitlab/testdata/push.json")
	post := func(token, uuid string) triggersv1.InterceptorResponse {
		return postInterceptor(t, client, base, triggersv1.InterceptorRequest{
			Body:   string(body),
			Header: map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {token}, "X-Gitlab-Event-Uuid": {uuid}},
			InterceptorParams: map[string]any{"secretRef": map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"},
				"eventTypes": []string{"Push Hook"}, "policy": "build-on-change"},
			Context: &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/build", EventURL: "http://el/"},
		})
	}
	if r := post("s3cret", "u1"); !r.Continue || r.Extensions["image_tag"] != "c95fc90a" {
		t.Errorf("good push: %+v", r)
	}
	if r := post("wrong", "u2"); r.Continue || r.Status.Code.String() != "InvalidArgument" {
		t.Errorf("wrong token: %+v", r.Status)
	}
	if r := post("s3cret", "u1"); r.Continue || !strings.Contains(r.Status.Message, "duplicate") {
		t.Errorf("duplicate: %+v", r.Status)
	}
	_, metrics := get("/metrics")
	for _, m := range []string{`ciel_interceptor_requests_total{code="OK",result="continue"} 1`, `ciel_interceptor_requests_total{code="InvalidArgument",result="error"} 1`,
		"ciel_interceptor_dedup_hits_total 1", `ciel_policy_reload_total{result="success"} 1`, "ciel_interceptor_decision_duration_seconds_bucket"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the token appears in the logs")
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cmd, logs, 15*time.Second)
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("logs lack the shutdown:\n%s", logs)
	}
}

// TestRealBinaryGitLabPrivateCA: the interceptor's GitLab API client trusts a
// GitLab served with a private CA once the CA's PEM file is in the directory
// SSL_CERT_DIR names, as config/interceptor/deployment.yaml mounts the
// optional ConfigMap ciel-gitlab-ca (docs/install.md); without it the same
// lookup fails on the certificate.
func TestRealBinaryGitLabPrivateCA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	gl := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/repository/compare") || r.Header.Get("PRIVATE-TOKEN") != "glpat-ca-test" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"commits":[],"compare_timeout":false,"compare_same_ref":false,"diffs":[`+
			`{"old_path":"src/ledger/export.go","new_path":"src/ledger/export.go","new_file":false,"renamed_file":false,"deleted_file":false,"diff":""}]}`)
	}))
	defer gl.Close()
	dir := t.TempDir()
	caDir := filepath.Join(dir, "gitlab-ca")
	os.MkdirAll(caDir, 0o755)
	os.WriteFile(filepath.Join(caDir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: gl.Certificate().Raw}), 0o644)
	secrets := webhookSecretDir(t, dir)
	body, err := os.ReadFile("../../../interceptor/gitlab/testdata/truncated_push.json")
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		certDir string
		trusted bool
	}{
		{"CA in SSL_CERT_DIR", caDir, true},
		{"CA not given", filepath.Join(dir, "empty"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.MkdirAll(tc.certDir, 0o755)
			base, _, logs := startBinaryEnv(t, []string{"SSL_CERT_DIR=" + tc.certDir, "GITLAB_TOKEN=glpat-ca-test"},
				"--local", "--http-addr", "127.0.0.1:0", "--policies", "../../../policies", "--secret-dir", secrets,
				"--gitlab-url", gl.URL, "--gitlab-retries", "0", "--log-format", "text",
				// The fixture's project lives on gitlab.example.com; the API
				// stub is on loopback.
				"--allowed-git-hosts", "gitlab.example.com")
			ir := postInterceptor(t, http.DefaultClient, base, triggersv1.InterceptorRequest{
				Body:   string(body),
				Header: map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {"s3cret"}, "X-Gitlab-Event-Uuid": {"ca-" + tc.certDir}},
				InterceptorParams: map[string]any{"secretRef": map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"},
					"eventTypes": []string{"Push Hook"}, "changedFiles": "api"},
				Context: &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/build", EventURL: "http://el/"},
			})
			cf, _ := ir.Extensions["changed_files"].(map[string]any)
			if tc.trusted {
				if !ir.Continue || cf["source"] != "api" || cf["count"] != float64(1) {
					t.Errorf("with the CA: continue=%v changed_files=%v status=%+v\n%s", ir.Continue, cf, ir.Status, logs)
				}
				return
			}
			if ir.Continue || !strings.Contains(logs.String()+ir.Status.Message, "certificate") {
				t.Errorf("without the CA: continue=%v status=%+v, want a certificate error\n%s", ir.Continue, ir.Status, logs)
			}
		})
	}
}
