package kubesecrets

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ciel-ci/ciel/interceptor/secrets"
)

func TestKubernetesCachesAndExpires(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ci", Name: "gitlab-webhook"},
		Data:       map[string][]byte{"token": []byte("one")},
	})
	var gets int
	var mu sync.Mutex
	cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		gets++
		mu.Unlock()
		return false, nil, nil
	})
	now := time.Unix(1700000000, 0)
	k, err := NewKubernetes(cs.CoreV1(), WithTTL(30*time.Second), WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		got, err := k.GetSecret(ctx, "ci", "gitlab-webhook", "token")
		if err != nil || string(got) != "one" {
			t.Fatalf("GetSecret() = %q, %v", got, err)
		}
		got[0] = 'X' // callers may not corrupt the cache
	}
	if gets != 1 {
		t.Fatalf("API reads = %d, want 1 (cached)", gets)
	}
	if _, err := k.GetSecret(ctx, "ci", "gitlab-webhook", "nokey"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("missing key: %v", err)
	}
	// Rotation is seen after the TTL.
	s, _ := cs.CoreV1().Secrets("ci").Get(ctx, "gitlab-webhook", metav1.GetOptions{})
	s.Data["token"] = []byte("two")
	if _, err := cs.CoreV1().Secrets("ci").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(31 * time.Second)
	got, err := k.GetSecret(ctx, "ci", "gitlab-webhook", "token")
	if err != nil || string(got) != "two" {
		t.Fatalf("after TTL GetSecret() = %q, %v; want two", got, err)
	}
}

func TestKubernetesNotFoundAndErrors(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	fail := true
	cs.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetNamespace() == "forbidden" && fail {
			return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "x", errors.New("rbac"))
		}
		return false, nil, nil
	})
	k, err := NewKubernetes(cs.CoreV1())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.GetSecret(ctx, "ci", "absent", "token"); !errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "ci/absent does not exist") {
		t.Fatalf("absent: %v", err)
	}
	if _, err := k.GetSecret(ctx, "forbidden", "x", "token"); err == nil || errors.Is(err, secrets.ErrNotFound) || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("forbidden: %v", err)
	}
	// Errors other than NotFound are not cached.
	fail = false
	if _, err := k.GetSecret(ctx, "forbidden", "x", "token"); !errors.Is(err, secrets.ErrNotFound) {
		t.Fatalf("after the error cleared: %v", err)
	}
	if _, err := k.GetSecret(ctx, "", "x", "token"); err == nil {
		t.Fatalf("empty namespace accepted")
	}
	if _, err := NewKubernetes(nil); err == nil {
		t.Fatalf("nil client accepted")
	}
}
