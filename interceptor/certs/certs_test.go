package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
)

func clusterInterceptor(name, caBundle string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "triggers.tekton.dev/v1alpha1",
		"kind":       "ClusterInterceptor",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{"clientConfig": map[string]any{
			"service": map[string]any{"name": "ciel-interceptor", "namespace": "ciel", "path": "/gitlab", "port": int64(8443)},
		}},
	}}
	if caBundle != "" {
		_ = unstructured.SetNestedField(u.Object, caBundle, "spec", "clientConfig", "caBundle")
	}
	return u
}

func caBundleOf(t *testing.T, dyn *dynfake.FakeDynamicClient, name string) []byte {
	t.Helper()
	u, err := dyn.Resource(ClusterInterceptorResource).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s, _, _ := unstructured.NestedString(u.Object, "spec", "clientConfig", "caBundle")
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("caBundle is not base64: %v", err)
	}
	return b
}

func TestSyncCreatesPublishesAndServes(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	kube, dyn := newFakesWith(t, clusterInterceptor("ciel", ""))
	m, err := NewManager(kube.CoreV1(), dyn, WithNamespace("ciel"), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	if m.Ready() {
		t.Fatal("ready before the first sync")
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := kube.CoreV1().Secrets("ciel").Get(ctx, "ciel-interceptor-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("secret not created: %v", err)
	}
	for _, k := range []string{KeyCABundle, KeyCAKey, KeyCert, KeyKey} {
		if len(s.Data[k]) == 0 {
			t.Errorf("secret lacks %s", k)
		}
	}
	if diff := cmp.Diff(s.Data[KeyCABundle], caBundleOf(t, dyn, "ciel")); diff != "" {
		t.Errorf("ClusterInterceptor caBundle differs from the secret's CA (-secret +ci):\n%s", diff)
	}
	// The served certificate verifies for every in-cluster name against the bundle.
	c, err := m.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(c.Certificate[0])
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(m.CABundle())
	for _, n := range []string{"ciel-interceptor.ciel.svc", "ciel-interceptor.ciel.svc.cluster.local"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: n, CurrentTime: now}); err != nil {
			t.Errorf("certificate does not verify for %s: %v", n, err)
		}
	}

	// A second Sync (another replica, a restart) changes nothing.
	m2, _ := NewManager(kube.CoreV1(), dyn, WithNamespace("ciel"), WithClock(func() time.Time { return now.Add(24 * time.Hour) }))
	if err := m2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s2, _ := kube.CoreV1().Secrets("ciel").Get(ctx, "ciel-interceptor-tls", metav1.GetOptions{})
	if diff := cmp.Diff(s.Data, s2.Data); diff != "" {
		t.Errorf("second sync rewrote the secret:\n%s", diff)
	}
}

func newFakesWith(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *dynfake.FakeDynamicClient) {
	t.Helper()
	scheme := runtime.NewScheme()
	dyn := dynfake.NewSimpleDynamicClientWithCustomListKinds(scheme,
		map[schema.GroupVersionResource]string{ClusterInterceptorResource: "ClusterInterceptorList"}, objs...)
	return fake.NewClientset(), dyn
}

func TestRenewal(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	kube, dyn := newFakesWith(t, clusterInterceptor("ciel", ""))
	m, err := NewManager(kube.CoreV1(), dyn, WithNamespace("ciel"), WithValidity(300*24*time.Hour, 90*24*time.Hour),
		WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	first := secretData(t, kube)

	// 50 days in: more than a third of the certificate's 90 days is left.
	now = start.Add(50 * 24 * time.Hour)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, secretData(t, kube)); diff != "" {
		t.Fatalf("renewed too early")
	}
	// 70 days in: less than a third left: a new certificate from the same CA.
	now = start.Add(70 * 24 * time.Hour)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	second := secretData(t, kube)
	if string(second[KeyCert]) == string(first[KeyCert]) {
		t.Fatal("certificate not renewed")
	}
	if string(second[KeyCABundle]) != string(first[KeyCABundle]) {
		t.Fatal("CA changed although it was not due")
	}
	// 250 days in: the CA is due: new CA, bundle keeps the old one, published.
	now = start.Add(250 * 24 * time.Hour)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	third := secretData(t, kube)
	if n := strings.Count(string(third[KeyCABundle]), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("bundle has %d CAs, want the new and the previous", n)
	}
	if !strings.Contains(string(third[KeyCABundle]), strings.TrimSpace(string(first[KeyCABundle]))) {
		t.Fatal("bundle lost the previous CA")
	}
	if string(caBundleOf(t, dyn, "ciel")) != string(third[KeyCABundle]) {
		t.Fatal("ClusterInterceptor not updated with the new bundle")
	}
}

func secretData(t *testing.T, kube *fake.Clientset) map[string][]byte {
	t.Helper()
	s, err := kube.CoreV1().Secrets("ciel").Get(context.Background(), "ciel-interceptor-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func TestBrokenSecretIsReplaced(t *testing.T) {
	ctx := context.Background()
	kube, dyn := newFakesWith(t, clusterInterceptor("ciel", "bm90IGEgY2VydA=="))
	m, _ := NewManager(kube.CoreV1(), dyn, WithNamespace("ciel"))
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	s, _ := kube.CoreV1().Secrets("ciel").Get(ctx, "ciel-interceptor-tls", metav1.GetOptions{})
	s.Data[KeyKey] = []byte("garbage")
	if _, err := kube.CoreV1().Secrets("ciel").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(secretData(t, kube)[KeyCert], secretData(t, kube)[KeyKey]); err != nil {
		t.Fatalf("broken key pair not replaced: %v", err)
	}
}

func TestMissingClusterInterceptorIsNotFatal(t *testing.T) {
	kube, dyn := newFakesWith(t)
	m, _ := NewManager(kube.CoreV1(), dyn, WithNamespace("ciel"))
	if err := m.Sync(context.Background()); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if !m.Ready() {
		t.Fatal("not serving")
	}
}

func TestOptions(t *testing.T) {
	kube, dyn := newFakesWith(t)
	for name, opts := range map[string][]Option{
		"no namespace":        nil,
		"cert longer than CA": {WithNamespace("x"), WithValidity(time.Hour, 2*time.Hour)},
		"empty secret name":   {WithNamespace("x"), WithSecretName("")},
	} {
		if _, err := NewManager(kube.CoreV1(), dyn, opts...); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := NewManager(kube.CoreV1(), nil, WithNamespace("x")); err == nil {
		t.Error("nil dynamic client accepted while ClusterInterceptors are to be patched")
	}
	if _, err := NewManager(kube.CoreV1(), nil, WithNamespace("x"), WithClusterInterceptors()); err != nil {
		t.Errorf("nil dynamic client without ClusterInterceptors: %v", err)
	}
}

// TestServesRealTLS serves HTTPS with the managed certificate and connects
// with a client that trusts only the published bundle.
func TestServesRealTLS(t *testing.T) {
	kube, dyn := newFakesWith(t, clusterInterceptor("ciel", ""))
	m, _ := NewManager(kube.CoreV1(), dyn, WithNamespace("ciel"))
	if err := m.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{GetCertificate: m.GetCertificate, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caBundleOf(t, dyn, "ciel"))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: "ciel-interceptor.ciel.svc",
	}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("TLS request: %v", err)
	}
	resp.Body.Close()
	// And a client with the system roots does not trust it.
	bad := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "ciel-interceptor.ciel.svc"}}}
	if _, err := bad.Get(srv.URL); err == nil {
		t.Fatal("an untrusting client connected")
	}
}

func TestFileSourceReloads(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	write := func(cn string) {
		ca, caKey, err := newCA(now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certPEM, keyPEM, err := newLeaf(now, time.Hour, ca, caKey, []string{cn})
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600)
		os.WriteFile(filepath.Join(dir, "tls.key"), keyPEM, 0o600)
	}
	cn := func(c *tls.Certificate) string {
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		return leaf.Subject.CommonName
	}
	write("first")
	f, err := NewFileSource(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := f.GetCertificate(nil)
	if cn(c) != "first" {
		t.Fatalf("got %s", cn(c))
	}
	time.Sleep(10 * time.Millisecond) // distinct modification times
	write("second")
	c, _ = f.GetCertificate(nil)
	if cn(c) != "second" {
		t.Fatalf("not reloaded: %s", cn(c))
	}
	// A half-written pair keeps the last good certificate.
	os.WriteFile(filepath.Join(dir, "tls.key"), []byte("-----BEGIN"), 0o600)
	c, _ = f.GetCertificate(nil)
	if c == nil || cn(c) != "second" {
		t.Fatal("lost the last good certificate")
	}
	if _, err := NewFileSource(filepath.Join(dir, "none.crt"), filepath.Join(dir, "tls.key"), 0); err == nil {
		t.Fatal("missing file accepted")
	}
}
