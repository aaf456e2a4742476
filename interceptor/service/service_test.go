package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ciel-ci/ciel/interceptor/certs"
	"github.com/ciel-ci/ciel/internal/interceptortest"
)

// TestRunLifecycle runs the service in cluster mode against fake
// Kubernetes clients on loopback: it keeps its certificate in a Secret,
// serves the probes and a webhook over HTTPS with it, and when its
// context ends fails /readyz while draining, then stops cleanly.
func TestRunLifecycle(t *testing.T) {
	kube := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "gitlab-webhook"},
		Data:       map[string][]byte{"token": []byte("s3cret")},
	})
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{certs.ClusterInterceptorResource: "ClusterInterceptorList"})
	pols := t.TempDir()
	policyFile := "name: build-on-change\neventTypes: [\"Push Hook\"]\nfilter: 'body.ref == \"refs/heads/main\"'\n" +
		"overlays:\n  - key: image_tag\n    expression: body.checkout_sha.substring(0, 8)\n"
	if err := os.WriteFile(filepath.Join(pols, "build.yaml"), []byte(policyFile), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Kube: kube, Dynamic: dyn, HTTPSAddr: "127.0.0.1:0", Namespace: "ciel",
			ServiceName: "ciel-interceptor", TLSSecret: "ciel-interceptor-tls", ClusterInterceptors: []string{"ciel"},
			Policies: pols, PolicyPoll: time.Hour, DrainPeriod: 300 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
			CostLimit: 1_000_000, MaxBodyBytes: 1 << 20, DedupTTL: time.Hour,
			Logger: newLogger(&logs), Stdout: pw})
		pw.Close()
	}()
	base, err := interceptortest.Address(pr)
	if err != nil {
		t.Fatalf("%v\n%s", err, logs.String())
	}
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("address %q, want https on loopback", base)
	}

	// The client trusts only the CA the service wrote into its Secret.
	sec, err := kube.CoreV1().Secrets("ciel").Get(ctx, "ciel-interceptor-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the TLS Secret was not written: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(sec.Data[certs.KeyCABundle]) {
		t.Fatal("no CA in the TLS Secret")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "ciel-interceptor.ciel.svc"}}}
	get := func(path string) (int, string) { return interceptortest.Get(t, client, base+path) }
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("%s: %d %q\n%s", path, code, body, logs.String())
		}
	}

	body, err := os.ReadFile("../gitlab/testdata/push.json")
	if err != nil {
		t.Fatal(err)
	}
	post := func(token string) triggersv1.InterceptorResponse {
		t.Helper()
		return interceptortest.Post(t, client, base, triggersv1.InterceptorRequest{
			Body:   string(body),
			Header: map[string][]string{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {token}},
			InterceptorParams: map[string]any{"secretRef": map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"},
				"policy": "build-on-change"},
			Context: &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/build", EventURL: "http://el/"},
		})
	}
	if r := post("s3cret"); !r.Continue || r.Extensions["image_tag"] == nil {
		t.Errorf("good push: %+v\n%s", r, logs.String())
	}
	if r := post("wrong"); r.Continue || r.Status.Code.String() != "InvalidArgument" {
		t.Errorf("wrong token: %+v", r.Status)
	}
	if _, metrics := get("/metrics"); !strings.Contains(metrics, `ciel_interceptor_requests_total{code="OK",result="continue"} 1`) ||
		!strings.Contains(metrics, "ciel_policies_loaded 1") {
		t.Errorf("/metrics lacks the request and the policies:\n%s", metrics)
	}

	cancel()
	// While draining, the listener still serves and /readyz says why not.
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while draining: %d %q", code, body)
	}
	waitStopped(t, done)
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("logs lack the shutdown:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Error("the token appears in the logs")
	}
	if _, err := client.Get(base + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}
}

// TestRunLocalNotReady runs local mode (no cluster) with a policy
// directory that does not load: it serves plain HTTP, is alive but not
// ready and says why, and stops at once without a drain period.
func TestRunLocalNotReady(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{HTTPAddr: "127.0.0.1:0", Policies: filepath.Join(t.TempDir(), "missing"), PolicyPoll: time.Hour,
			ShutdownTimeout: 5 * time.Second, CostLimit: 1_000_000, MaxBodyBytes: 1 << 20, DedupTTL: time.Hour, Stdout: pw})
		pw.Close()
	}()
	base, err := interceptortest.Address(pr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("address %q, want plain HTTP on loopback", base)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/healthz", http.StatusOK, "ok"},
		{"/readyz", http.StatusServiceUnavailable, "policies not loaded: reading policies"},
	}
	for _, tt := range tests {
		if code, body := interceptortest.Get(t, client, base+tt.path); code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %q, want %d with %q", tt.path, code, body, tt.code, tt.want)
		}
	}
	cancel()
	waitStopped(t, done)
}

// waitStopped waits for Run, after its context ended, to return nil.
func waitStopped(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
