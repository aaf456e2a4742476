// Package policies_test runs every test case of the shipped policies
// through the real engine, as `cel-eval test policies/` does in CI.
package policies_test

import (
	"context"
	"testing"

	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/policy"
)

func TestShippedPolicies(t *testing.T) {
	eng, err := engine.New()
	if err != nil {
		t.Fatal(err)
	}
	set, err := policy.LoadDir(eng, ".")
	if err != nil {
		t.Fatal(err)
	}
	// config/triggers refers to these by name.
	for _, name := range []string{"build-on-change", "release-semver", "build-mr-on-change", "skip-mr-metadata-edits"} {
		if _, ok := set.Get(name); !ok {
			t.Errorf("policy %q is missing (config/triggers uses it)", name)
		}
	}
	for _, p := range set.Policies() {
		if len(p.Tests) < 3 {
			t.Errorf("%s: %d test cases, want at least 3", p.Name, len(p.Tests))
		}
		for _, r := range p.RunCases(context.Background(), eng) {
			t.Run(p.Name+"/"+r.Case, func(t *testing.T) {
				if !r.Pass {
					t.Error(r.Problem)
				}
			})
		}
	}
}
