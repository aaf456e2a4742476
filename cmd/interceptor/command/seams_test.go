package command

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"

	"github.com/ciel-ci/ciel/interceptor/webhook"
	"github.com/ciel-ci/ciel/internal/gitlabtest"
	"github.com/ciel-ci/ciel/internal/registrytest"

	"github.com/ciel-ci/ciel/internal/interceptortest"
)

// TestRealBinarySeams runs the interceptor binary over HTTPS on loopback,
// with its GitLab API on a hostile GitLab (HTTPS on loopback), and checks
// the defences of issue 21 at the process's edge: refused triggers without
// a secret, signed replays, long delivery IDs, forged clone URLs, the
// bounded changed-files fallback, the glob cost limit, the delivery name
// suffix, Go and process metrics, and the SIGTERM drain.
func TestRealBinarySeams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	signingKey := []byte("0123456789abcdef0123456789abcdef")
	for name, v := range map[string]string{"gitlab-webhook/token": "s3cret\n", "gitlab-signing/key": "whsec_" + b64(signingKey)} {
		os.MkdirAll(filepath.Join(dir, "secrets", filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(dir, "secrets", name), []byte(v), 0o600)
	}
	hostile := &gitlabtest.Hostile{Commits: 5000, PageSize: 100, DiffBytes: 3000}
	gl := httptest.NewTLSServer(hostile)
	defer gl.Close()
	glCA := gitlabtest.CAFile(t, gl)
	os.WriteFile(filepath.Join(dir, "gitlab-token"), []byte("glpat-test"), 0o600)

	certFile, keyFile, pool := registrytest.Certificates(t, dir)
	t.Setenv("SSL_CERT_FILE", glCA) // the binary trusts the hostile GitLab's certificate
	base, cmd, logs := startBinary(t, "--local", "--http-addr", "127.0.0.1:0", "--policies", "../../../policies",
		"--secret-dir", filepath.Join(dir, "secrets"), "--tls-cert-file", certFile, "--tls-key-file", keyFile, "--log-format", "text",
		"--gitlab-url", gl.URL, "--gitlab-token-file", filepath.Join(dir, "gitlab-token"), "--gitlab-retries", "0",
		"--allowed-git-hosts", "gitlab.example.com", "--drain-period", "3s")
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(path string) (int, string) { return interceptortest.Get(t, client, base+path) }
	push := readFile(t, "../../../interceptor/gitlab/testdata/push.json")
	forcePush := readFile(t, "../../../interceptor/gitlab/testdata/force_push.json")
	token := map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"}
	post := func(body string, header map[string][]string, params map[string]any) (triggersv1.InterceptorResponse, time.Duration) {
		t.Helper()
		h := map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {"s3cret"}}
		for k, v := range header {
			h[k] = v
		}
		start := time.Now()
		ir := postInterceptor(t, client, base, triggersv1.InterceptorRequest{Body: body, Header: h, InterceptorParams: params,
			Context: &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/build", EventURL: "http://el/", EventID: "ev"}})
		return ir, time.Since(start)
	}
	expect := func(name string, r triggersv1.InterceptorResponse, code, msg string) {
		t.Helper()
		if r.Status.Code.String() != code || !strings.Contains(r.Status.Message, msg) {
			t.Errorf("%s: %s %q; want %s containing %q", name, r.Status.Code, r.Status.Message, code, msg)
		}
	}

	// A trigger without a secret is refused; insecure: true is accepted.
	r, _ := post(push, nil, map[string]any{"filter": "true"})
	expect("no secretRef", r, "FailedPrecondition", "neither secretRef nor signingSecretRef")
	// The stored token ends with a newline (kubectl --from-file): accepted.
	r, _ = post(push, map[string][]string{"Idempotency-Key": {"d-1"}}, map[string]any{"secretRef": token, "filter": "true"})
	suffix, _ := r.Extensions["delivery"].(map[string]any)["name_suffix"].(string)
	if !r.Continue || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(suffix) {
		t.Errorf("good push: %v, extensions.delivery %v", r.Status, r.Extensions["delivery"])
	}

	// A signed delivery replayed with a fresh Idempotency-Key is a duplicate.
	signed := func(idem string) map[string][]string {
		ts, sig := webhook.Sign(signingKey, "msg_1", time.Now(), []byte(push))
		return map[string][]string{"Webhook-Id": {"msg_1"}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {sig}, "Idempotency-Key": {idem}}
	}
	sign := map[string]any{"signingSecretRef": map[string]any{"secretName": "gitlab-signing", "secretKey": "key"}, "filter": "true"}
	if r, _ := post(push, signed("k1"), sign); !r.Continue {
		t.Errorf("signed delivery: %v", r.Status)
	}
	r, _ = post(push, signed("k2"), sign)
	expect("signed replay", r, "FailedPrecondition", "duplicate delivery msg_1")

	r, _ = post(push, map[string][]string{"Idempotency-Key": {strings.Repeat("k", 300)}}, map[string]any{"secretRef": token, "filter": "true"})
	expect("300-byte delivery ID", r, "InvalidArgument", "over the limit of 256")

	// A clone URL on another host, or of another project.
	forged := strings.Replace(push, "https://gitlab.example.com/acme/payments-api.git", "https://evil.example.net/acme/payments-api.git", 1)
	r, _ = post(forged, nil, map[string]any{"secretRef": token, "filter": "true"})
	expect("clone URL on another host", r, "InvalidArgument", "project.git_http_url")
	r, _ = post(push, map[string][]string{"Idempotency-Key": {"d-2"}}, map[string]any{"secretRef": token, "filter": "true", "allowedProjects": []string{"other/**"}})
	expect("project not allowed", r, "FailedPrecondition", "allowedProjects")

	// The changed-files fallback against the hostile GitLab: a truncated
	// answer within the request, and the policy's truncated branch decides.
	r, took := post(forcePush, map[string][]string{"Idempotency-Key": {"d-3"}}, map[string]any{"secretRef": token,
		"filter": "extensions.changed_files.truncated", "overlays": []map[string]any{{"key": "n", "expression": "extensions.changed_files.count"}}})
	t.Logf("hostile GitLab: %d calls, %d MiB served, answered in %s: %v %v", hostile.Calls(), hostile.Bytes()>>20, took.Round(time.Millisecond), r.Status, r.Extensions["n"])
	if !r.Continue {
		t.Errorf("hostile GitLab: %v, want a truncated list the filter sees", r.Status)
	}

	// A 1 MiB path against a 1 KiB pattern stops at the cost limit.
	glob, _ := json.Marshal(map[string]any{"object_kind": "note", "path": strings.Repeat("a", 1<<20), "pattern": strings.Repeat("*a", 512)})
	r, took = post(string(glob), map[string][]string{"X-Gitlab-Event": {"Note Hook"}}, map[string]any{"secretRef": token, "filter": "body.path.glob(body.pattern)"})
	t.Logf("hostile glob answered in %s: %v", took.Round(time.Millisecond), r.Status)
	expect("hostile glob", r, "InvalidArgument", "cost limit")

	_, metrics := get("/metrics")
	for _, m := range []string{"go_goroutines ", "go_memstats_heap_alloc_bytes ", "process_resident_memory_bytes ", "ciel_changed_files_truncated_total 1"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	// SIGTERM: /readyz fails while the server still answers, then it exits.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	drained := false
	for time.Now().Before(deadline) {
		if code, _ := get("/readyz"); code == http.StatusServiceUnavailable {
			drained = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !drained {
		t.Error("/readyz did not fail after SIGTERM")
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("during the drain /healthz answered %d: the listener closed early", code)
	}
	waitExit(t, cmd, logs, 20*time.Second)
	if !strings.Contains(logs.String(), "draining") {
		t.Errorf("logs lack the drain:\n%s", logs)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func b64(b []byte) string {
	s, _ := json.Marshal(b)
	return strings.Trim(string(s), `"`)
}
