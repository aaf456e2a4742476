package celcompat_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/cel-go/cel"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	tcel "github.com/tektoncd/triggers/pkg/interceptors/cel"

	"github.com/ciel-ci/ciel/interceptor/celenv"
)

const benchFilter = `header.match('X-Gitlab-Event', 'Push Hook') &&
	body.ref.split('/')[2] == 'feature' &&
	header.canonical('X-Gitlab-Token').compareSecret('token', 'gitlab-webhook')`

// BenchmarkFilter compares one filter evaluation per request: Triggers
// builds its environment, parses, checks and plans the expression on every
// request; ciel does that once. Both decode the same JSON body per request.
func BenchmarkFilter(b *testing.B) {
	b.Run("triggers", func(b *testing.B) {
		w := tcel.NewInterceptor(triggersSecrets{})
		req := &triggersv1.InterceptorRequest{
			Body:              payload,
			Header:            header,
			InterceptorParams: map[string]any{"filter": benchFilter},
			Context:           &triggersv1.TriggerContext{EventURL: requestURL, TriggerID: "namespaces/" + namespace + "/triggers/build"},
		}
		for b.Loop() {
			if resp := w.Process(context.Background(), req); !resp.Continue {
				b.Fatal(resp.Status.Message)
			}
		}
	})
	b.Run("ciel", func(b *testing.B) {
		env, err := celenv.New(celenv.WithSecretGetter(cielSecrets{}))
		if err != nil {
			b.Fatal(err)
		}
		ast, iss := env.Compile(benchFilter)
		if iss.Err() != nil {
			b.Fatal(iss.Err())
		}
		prg, err := env.Program(ast, cel.CostLimit(1_000_000), cel.InterruptCheckFrequency(100))
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			var body map[string]any
			if err := json.Unmarshal([]byte(payload), &body); err != nil {
				b.Fatal(err)
			}
			ctx := celenv.WithNamespace(context.Background(), namespace)
			act, err := celenv.NewActivation(ctx, map[string]any{"body": body, "header": header, "requestURL": requestURL, "extensions": map[string]any{}})
			if err != nil {
				b.Fatal(err)
			}
			out, _, err := prg.ContextEval(ctx, act)
			if err != nil || out.Value() != true {
				b.Fatal(out, err)
			}
		}
	})
}
