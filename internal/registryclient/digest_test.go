package registryclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/ciel-ci/ciel/internal/registrytest"
)

func TestIsNotFound(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"404", &transport.Error{StatusCode: http.StatusNotFound}, true},
		{"manifest unknown with another status", &transport.Error{StatusCode: http.StatusBadRequest,
			Errors: []transport.Diagnostic{{Code: transport.ManifestUnknownErrorCode}}}, true},
		{"name unknown", &transport.Error{StatusCode: http.StatusBadRequest,
			Errors: []transport.Diagnostic{{Code: transport.NameUnknownErrorCode}}}, true},
		{"wrapped 404", fmt.Errorf("reading: %w", &transport.Error{StatusCode: http.StatusNotFound}), true},
		{"unauthorized", &transport.Error{StatusCode: http.StatusUnauthorized,
			Errors: []transport.Diagnostic{{Code: transport.UnauthorizedErrorCode}}}, false},
		{"not a registry answer", errors.New("404"), false},
		{"nil", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsNotFound(tc.err); got != tc.want {
				t.Errorf("IsNotFound(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestDigests(t *testing.T) {
	host := registrytest.Memory(t)
	ctx := context.Background()
	pushed := registrytest.Push(t, host+"/app:v1", registrytest.RandomImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}))
	want, tagged := pushed.DigestStr(), pushed.Context().Tag("v1")
	puller, err := remote.NewPuller()
	if err != nil {
		t.Fatal(err)
	}
	refs := []name.Reference{tagged, pushed.Context().Tag("missing"), pushed.Context().Registry.Repo("nothing").Tag("v1")}
	got, err := Digests(ctx, puller, 2, refs)
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != want || got[1] != "" || got[2] != "" {
		t.Errorf("Digests = %q, want [%s, \"\", \"\"] (a missing tag or repository is \"\")", got, want)
	}

	// Any other answer fails, naming the reference.
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		http.Error(w, `{"errors":[{"code":"DENIED"}]}`, http.StatusForbidden)
	}))
	t.Cleanup(refused.Close)
	bad, err := name.ParseReference(strings.TrimPrefix(refused.URL, "http://") + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Digests(ctx, puller, 0, []name.Reference{tagged, bad}); err == nil || !strings.Contains(err.Error(), "reading what "+bad.String()+" points at") {
		t.Errorf("Digests with a refused reference: %v", err)
	}
}
