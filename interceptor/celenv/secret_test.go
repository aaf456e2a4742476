package celenv

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/go-cmp/cmp"

	"github.com/ciel-ci/ciel/interceptor/webhook"
)

func TestCompareSecret(t *testing.T) {
	secrets := &fakeSecrets{secrets: map[string]string{
		"testing-ns/test-secret/token": "secrettoken",
		"other-ns/test-secret/token":   "othertoken",
	}}
	env := newEnv(t, WithSecretGetter(secrets))
	// Each case looks the token of test-secret up lookups times, in the
	// namespace of the request.
	tests := []struct {
		name      string
		namespace string
		expr      string
		want      bool
		lookups   int
	}{
		{"matching header", "testing-ns", "header.canonical('X-Secret-Token').compareSecret('token', 'test-secret')", true, 1},
		{"literal match", "testing-ns", "'secrettoken'.compareSecret('token', 'test-secret')", true, 1},
		{"no match", "testing-ns", "'nomatch'.compareSecret('token', 'test-secret')", false, 1},
		{"prefix is no match", "testing-ns", "'secret'.compareSecret('token', 'test-secret')", false, 1},
		{"three arguments read the trigger's namespace, as Triggers", "testing-ns", "'secrettoken'.compareSecret('token', 'test-secret', 'other-ns')", true, 1},
		{"the same program in another namespace", "other-ns", "'othertoken'.compareSecret('token', 'test-secret')", true, 1},
		{"inside a comprehension", "testing-ns", "['a', 'secrettoken'].exists(x, x.compareSecret('token', 'test-secret'))", true, 2},
		{"short-circuit skips the lookup", "testing-ns", "false && 'x'.compareSecret('token', 'test-secret')", false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			secrets.calls = nil
			ctx := WithNamespace(context.Background(), tc.namespace)
			got, _, err := eval(t, env, ctx, tc.expr, testVars())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, native(got)); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			var wantCalls []string
			for range tc.lookups {
				wantCalls = append(wantCalls, tc.namespace+"/test-secret/token")
			}
			if diff := cmp.Diff(wantCalls, secrets.calls); diff != "" {
				t.Errorf("secret lookups (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCompareSecretOneProgram evaluates one compiled program for requests of
// different namespaces, concurrently: nothing is rebuilt per request.
func TestCompareSecretOneProgram(t *testing.T) {
	secrets := &fakeSecrets{secrets: map[string]string{"a/s/k": "A", "b/s/k": "B"}}
	prg := program(t, newEnv(t, WithSecretGetter(secrets)), "body.token.compareSecret('k', 's')", cel.CostLimit(1000), cel.InterruptCheckFrequency(10))
	type result struct {
		ns, token string
		got       any
		err       error
	}
	results := make(chan result)
	cases := [][2]string{{"a", "A"}, {"b", "B"}, {"a", "B"}, {"b", "A"}}
	for i := 0; i < 40; i++ {
		c := cases[i%len(cases)]
		go func() {
			ctx := WithNamespace(context.Background(), c[0])
			act, err := NewActivation(ctx, map[string]any{VarBody: map[string]any{"token": c[1]}})
			if err != nil {
				results <- result{err: err}
				return
			}
			out, _, err := prg.ContextEval(ctx, act)
			results <- result{ns: c[0], token: c[1], got: native(out), err: err}
		}()
	}
	for i := 0; i < 40; i++ {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if want := strings.EqualFold(r.ns, r.token); r.got != want {
			t.Errorf("namespace %s, token %s: got %v, want %v", r.ns, r.token, r.got, want)
		}
	}
}

func TestCompareSecretErrors(t *testing.T) {
	failing := &fakeSecrets{err: errors.New("connection refused")}
	empty := &fakeSecrets{}
	tests := []struct {
		name    string
		opts    []Option
		ctx     context.Context
		noAct   bool // evaluate the plain map, without NewActivation
		want    string
		wantErr error
	}{{
		name: "no getter",
		ctx:  WithNamespace(context.Background(), "ns"),
		want: "compareSecret: no secret getter configured (celenv.WithSecretGetter)",
	}, {
		name:  "no request context",
		opts:  []Option{WithSecretGetter(empty)},
		ctx:   WithNamespace(context.Background(), "ns"),
		noAct: true,
		want:  "compareSecret: the evaluation has no request context: evaluate with celenv.NewActivation(ctx, vars)",
	}, {
		name: "no namespace",
		opts: []Option{WithSecretGetter(empty)},
		ctx:  context.Background(),
		want: "compareSecret: no trigger namespace in the request context (celenv.WithNamespace)",
	}, {
		name:    "missing secret",
		opts:    []Option{WithSecretGetter(empty)},
		ctx:     WithNamespace(context.Background(), "ns"),
		want:    `compareSecret: reading key "token" of secret "test-secret" in namespace "ns": no such secret: ns/test-secret`,
		wantErr: errNoSecret,
	}, {
		name: "getter failure",
		opts: []Option{WithSecretGetter(failing)},
		ctx:  WithNamespace(context.Background(), "ns"),
		want: `compareSecret: reading key "token" of secret "test-secret" in namespace "ns": connection refused`,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prg := program(t, newEnv(t, tc.opts...), "'secrettoken'.compareSecret('token', 'test-secret')")
			var input any = testVars()
			if !tc.noAct {
				var err error
				if input, err = NewActivation(tc.ctx, testVars()); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := prg.ContextEval(tc.ctx, input)
			if err == nil {
				t.Fatal("no error")
			}
			if diff := cmp.Diff(tc.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
		})
	}
}

// TestCompareSecretDeadline passes the request's deadline to the getter.
func TestCompareSecretDeadline(t *testing.T) {
	env := secretsEnv(t, map[string]string{"ns/s/k": "v"})
	ctx, cancel := context.WithTimeout(WithNamespace(context.Background(), "ns"), time.Hour)
	cancel()
	_, _, err := eval(t, env, ctx, "'v'.compareSecret('k', 's')", testVars())
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error = %v, want the getter to see the cancelled context", err)
	}
}

// TestCompareSecretNotFolded keeps constant folding from calling
// compareSecret at compile time, where there is no request.
func TestCompareSecretNotFolded(t *testing.T) {
	secrets := &fakeSecrets{secrets: map[string]string{"ns/s/k": "v"}}
	env := newEnv(t, WithSecretGetter(secrets))
	ast, iss := env.Compile("'v'.compareSecret('k', 's') && 'x'.truncate(1) == 'x'")
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	folder, err := cel.NewConstantFoldingOptimizer()
	if err != nil {
		t.Fatal(err)
	}
	optimizer, err := cel.NewStaticOptimizer(folder)
	if err != nil {
		t.Fatal(err)
	}
	opt, iss := optimizer.Optimize(env, ast)
	if iss.Err() != nil {
		t.Fatal(iss.Err())
	}
	if len(secrets.calls) != 0 {
		t.Fatalf("folding looked secrets up: %v", secrets.calls)
	}
	prg, err := env.Program(opt, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		t.Fatal(err)
	}
	ctx := WithNamespace(context.Background(), "ns")
	act, err := NewActivation(ctx, map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := prg.ContextEval(ctx, act)
	if err != nil || native(out) != true {
		t.Errorf("got %v, %v; want true", out, err)
	}
	if diff := cmp.Diff([]string{"ns/s/k"}, secrets.calls); diff != "" {
		t.Errorf("lookups (-want +got):\n%s", diff)
	}
}

// TestCompareSecretAgreesWithTokenCheck: compareSecret and the
// interceptor's secretRef check (webhook.CheckToken) follow one rule on
// what a stored token is (webhook.SecretValue): they agree on every case.
func TestCompareSecretAgreesWithTokenCheck(t *testing.T) {
	tests := []struct {
		name, stored, sent string
		want               bool
	}{
		{"same", "tok", "tok", true},
		{"stored with a newline (kubectl --from-file)", "tok\n", "tok", true},
		{"stored with CRLF", "tok\r\n", "tok", true},
		{"stored with two newlines", "tok\n\n", "tok", true},
		{"trailing space is part of the token", "tok ", "tok", false},
		{"leading newline is part of the token", "\ntok", "tok", false},
		{"sent with a trailing space", "tok", "tok ", false},
		{"other token", "tok\n", "tik", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := secretsEnv(t, map[string]string{"ns/s/k": tc.stored})
			h := http.Header{}
			h.Set("X-Gitlab-Token", tc.sent)
			got, _, err := eval(t, env, WithNamespace(context.Background(), "ns"), "header.canonical('X-Gitlab-Token').compareSecret('k', 's')",
				map[string]any{"body": map[string]any{}, "header": h, "extensions": map[string]any{}, "requestURL": ""})
			if err != nil {
				t.Fatal(err)
			}
			check := webhook.CheckToken(h, []byte(tc.stored)) == nil
			if native(got) != tc.want || check != tc.want {
				t.Errorf("compareSecret %v, CheckToken %v; want both %v", native(got), check, tc.want)
			}
		})
	}
}
