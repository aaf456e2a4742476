package celenv_test

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/cel-go/cel"

	"github.com/ciel-ci/ciel/interceptor/celenv"
)

// secretDir is a SecretGetter over fixed values, for the example.
type secretDir map[string]string

func (d secretDir) GetSecret(_ context.Context, namespace, name, key string) ([]byte, error) {
	v, ok := d[namespace+"/"+name+"/"+key]
	if !ok {
		return nil, fmt.Errorf("no secret %s/%s", namespace, name)
	}
	return []byte(v), nil
}

func Example() {
	// Build the environment once, compile once.
	env, err := celenv.New(celenv.WithSecretGetter(secretDir{"ci/gitlab-webhook/token": "s3cret"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	ast, iss := env.Compile(`header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook') &&
		body.ref.split('/').last() == 'main' &&
		extensions.changed_files.all.matchesAny(['src/**', '!src/**/*.md'])`)
	if iss.Err() != nil {
		fmt.Println(iss.Err())
		return
	}
	prg, err := env.Program(ast, cel.CostLimit(1_000_000), cel.InterruptCheckFrequency(100))
	if err != nil {
		fmt.Println(err)
		return
	}

	// Evaluate per request, with the trigger's namespace in the context.
	ctx := celenv.WithNamespace(context.Background(), "ci")
	act, err := celenv.NewActivation(ctx, map[string]any{
		"body":       map[string]any{"ref": "refs/heads/main"},
		"header":     http.Header{"X-Gitlab-Token": {"s3cret"}},
		"extensions": map[string]any{"changed_files": map[string]any{"all": []any{"src/README.md", "src/main.go"}}},
		"requestURL": "https://ci.example.com/hooks",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	out, det, err := prg.ContextEval(ctx, act)
	fmt.Println(out, err, *det.ActualCost() > 0)
	// Output: true <nil> true
}
