// Package bench measures ciel against the tools it replaces.
//
// index_requests_test.go counts the registry HTTP requests of merging 2 and 8
// per-architecture images into one index, for `ciel index create` and for
// `crane index append` (go-containerregistry's own command, the same
// library version ciel uses), in the same run, against a real
// docker-registry behind a counting proxy. Run it with
//
//	go test ./test/bench -run TestIndexRequestCounts -v
//
// to print the table; the benchmark reports the same counts as
// requests/op.
package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	ciel "github.com/ciel-ci/ciel/cmd/ciel/command"
	"github.com/ciel-ci/ciel/internal/registrytest"
	cranecmd "github.com/google/go-containerregistry/cmd/crane/cmd"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// platforms to merge, in the order a CI matrix might finish.
var allPlatforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
	{OS: "linux", Architecture: "arm", Variant: "v6"},
	{OS: "linux", Architecture: "ppc64le"},
	{OS: "linux", Architecture: "s390x"},
	{OS: "linux", Architecture: "riscv64"},
	{OS: "linux", Architecture: "386"},
}

// seedImages pushes n per-architecture images (two layers each) straight to
// the registry in repo and returns their references through the proxy, by
// digest as Kaniko's --digest-file gives them.
func seedImages(tb testing.TB, reg *registrytest.Registry, proxy *registrytest.Proxy, repo string, n int) []string {
	tb.Helper()
	var refs []string
	for _, p := range allPlatforms[:n] {
		d := registrytest.Push(tb, reg.Host+"/"+repo, registrytest.RandomImage(tb, p))
		refs = append(refs, proxy.Host+"/"+repo+"@"+d.DigestStr())
	}
	return refs
}

// runCiel merges sources into tag with `ciel index create`.
func runCiel(tb testing.TB, tag string, sources []string) {
	tb.Helper()
	cmd := ciel.NewCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(append([]string{"index", "create", "--standard-annotations=false", "--tag", tag}, sources...))
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		tb.Fatalf("ciel index create: %v\n%s", err, errb.String())
	}
}

// runCrane merges sources into tag with `crane index append`.
func runCrane(tb testing.TB, tag string, sources []string) {
	tb.Helper()
	cmd := cranecmd.New("crane", "crane", nil)
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	args := []string{"index", "append", "-t", tag}
	for _, s := range sources {
		args = append(args, "-m", s)
	}
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		tb.Fatalf("crane index append: %v\n%s", err, errb.String())
	}
}

// counts summarises a proxy's requests.
type counts struct {
	total, ping, manifestGet, manifestHead, manifestPut, blobGet, blobHead, mounts, uploads int
}

func countOf(p *registrytest.Proxy) counts {
	var c counts
	for _, r := range p.Requests() {
		c.total++
		switch {
		case r.Kind == registrytest.KindPing:
			c.ping++
		case r.Kind == registrytest.KindManifest && r.Method == http.MethodGet:
			c.manifestGet++
		case r.Kind == registrytest.KindManifest && r.Method == http.MethodHead:
			c.manifestHead++
		case r.Kind == registrytest.KindManifest && r.Method == http.MethodPut:
			c.manifestPut++
		case r.Kind == registrytest.KindBlob && r.Method == http.MethodGet:
			c.blobGet++
		case r.Kind == registrytest.KindBlob && r.Method == http.MethodHead:
			c.blobHead++
		case r.IsMount():
			c.mounts++
		case r.Kind == registrytest.KindUpload:
			c.uploads++
		}
	}
	return c
}

type row struct {
	tool      string
	platforms int
	scenario  string
	c         counts
}

// measure runs every scenario for both tools on a fresh registry.
func measure(t *testing.T, n int) []row {
	reg := registrytest.Start(t)
	proxy := registrytest.NewProxy(t, reg)
	same := seedImages(t, reg, proxy, "team/app", n)
	build := seedImages(t, reg, proxy, "team/app-build", n)
	tools := []struct {
		name string
		run  func(testing.TB, string, []string)
	}{{"ciel", runCiel}, {"crane", runCrane}}
	var rows []row
	for _, tool := range tools {
		scenarios := []struct {
			name    string
			tag     string
			sources []string
		}{
			{"same repo, first run", "team/app:" + tool.name, same},
			{"same repo, re-run", "team/app:" + tool.name, same},
			{"other repo (mount)", "team/" + tool.name + "-dest:v1", build},
		}
		for _, s := range scenarios {
			proxy.Reset()
			tool.run(t, proxy.Host+"/"+s.tag, s.sources)
			rows = append(rows, row{tool: tool.name, platforms: n, scenario: s.name, c: countOf(proxy)})
		}
	}
	return rows
}

// TestIndexRequestCounts prints the request counts of ciel and crane side by
// side and checks ciel's against the minimum the issue sets: per source one
// manifest read and one config read, no blob upload, one manifest PUT per
// tag, and never more requests than crane.
func TestIndexRequestCounts(t *testing.T) {
	var rows []row
	for _, n := range []int{2, 8} {
		rows = append(rows, measure(t, n)...)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %3s  %-22s %5s %4s %7s %8s %7s %8s %9s %6s %7s\n",
		"tool", "n", "scenario", "total", "ping", "GET man", "HEAD man", "PUT man", "GET blob", "HEAD blob", "mounts", "uploads")
	for _, r := range rows {
		c := r.c
		fmt.Fprintf(&b, "%-6s %3d  %-22s %5d %4d %7d %8d %7d %8d %9d %6d %7d\n",
			r.tool, r.platforms, r.scenario, c.total, c.ping, c.manifestGet, c.manifestHead, c.manifestPut, c.blobGet, c.blobHead, c.mounts, c.uploads)
	}
	t.Logf("registry requests, ciel index create vs crane index append (go-containerregistry v0.22.1):\n%s", b.String())

	byKey := map[string]counts{}
	for _, r := range rows {
		byKey[fmt.Sprintf("%s/%d/%s", r.tool, r.platforms, r.scenario)] = r.c
	}
	for _, r := range rows {
		if r.tool != "ciel" {
			continue
		}
		c := r.c
		crane := byKey[fmt.Sprintf("crane/%d/%s", r.platforms, r.scenario)]
		if c.total > crane.total {
			t.Errorf("%d platforms, %s: ciel made %d requests, crane %d", r.platforms, r.scenario, c.total, crane.total)
		}
		if c.manifestGet != r.platforms || c.blobGet != r.platforms {
			t.Errorf("%d platforms, %s: %d manifest and %d blob reads, want one of each per source", r.platforms, r.scenario, c.manifestGet, c.blobGet)
		}
		if c.uploads != 0 {
			t.Errorf("%d platforms, %s: %d blob upload requests, want none", r.platforms, r.scenario, c.uploads)
		}
		wantPut := map[string]int{"same repo, first run": 1, "same repo, re-run": 0, "other repo (mount)": 1 + r.platforms}[r.scenario]
		if c.manifestPut != wantPut {
			t.Errorf("%d platforms, %s: %d manifest PUTs, want %d", r.platforms, r.scenario, c.manifestPut, wantPut)
		}
		// The one request above the minimum: GET /v2/, the registry API's
		// version check, whose answer (200, or 401 with a WWW-Authenticate
		// challenge) tells go-containerregistry whether to send Basic
		// credentials or fetch a Bearer token, and whether the registry
		// speaks HTTPS. No authenticated request can be made without it;
		// it is asked once per registry and shared by every read and write
		// of the operation (registryclient's pingShare).
		if c.ping != 1 {
			t.Errorf("%d platforms, %s: %d API version checks (GET /v2/), want 1 per registry", r.platforms, r.scenario, c.ping)
		}
		if r.scenario != "other repo (mount)" {
			// Per source one manifest and one config read, the tag's HEAD,
			// the index PUT when the tag moves: 2N+2 (2N+1 on a re-run).
			want := 2*r.platforms + 1 + wantPut + 1
			if c.total != want {
				t.Errorf("%d platforms, %s: %d requests, want %d (2N+%d and one GET /v2/)", r.platforms, r.scenario, c.total, want, 1+wantPut)
			}
		}
	}
}

// BenchmarkIndexCreate reports the requests of a first merge as
// requests/op, for ciel and crane.
func BenchmarkIndexCreate(b *testing.B) {
	for _, n := range []int{2, 8} {
		reg := registrytest.Start(b)
		proxy := registrytest.NewProxy(b, reg)
		sources := seedImages(b, reg, proxy, "team/app", n)
		for _, tool := range []struct {
			name string
			run  func(testing.TB, string, []string)
		}{{"ciel", runCiel}, {"crane", runCrane}} {
			b.Run(fmt.Sprintf("%s/platforms=%d", tool.name, n), func(b *testing.B) {
				proxy.Reset()
				i := 0
				for b.Loop() {
					tool.run(b, fmt.Sprintf("%s/team/app:%s-%d", proxy.Host, tool.name, i), sources)
					i++
				}
				b.ReportMetric(float64(len(proxy.Requests()))/float64(i), "requests/op")
			})
		}
	}
}
