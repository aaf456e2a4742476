package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/ciel-ci/ciel/interceptor/dedup"
	"github.com/ciel-ci/ciel/interceptor/engine"
	"github.com/ciel-ci/ciel/interceptor/gitlab"
	"github.com/ciel-ci/ciel/interceptor/policy"
	"github.com/ciel-ci/ciel/interceptor/secrets"
	"github.com/ciel-ci/ciel/interceptor/webhook"
)

const triggerID = "namespaces/team-a/triggers/build-on-push"

type mapSecrets map[string]string

func (m mapSecrets) GetSecret(_ context.Context, ns, name, key string) ([]byte, error) {
	if ns == "down" {
		return nil, errors.New("connection refused")
	}
	v, ok := m[ns+"/"+name+"/"+key]
	if !ok {
		return nil, fmt.Errorf("%w: secret %s/%s", secrets.ErrNotFound, ns, name)
	}
	return []byte(v), nil
}

// fakeAPI counts calls and answers a fixed list, or fails.
type fakeAPI struct {
	calls atomic.Int32
	err   error
}

func (f *fakeAPI) ChangedFiles(ctx context.Context, e *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
	cf := gitlab.PayloadChangedFiles(e)
	if !cf.Truncated {
		return cf, nil
	}
	return f.Compare(ctx, e)
}

func (f *fakeAPI) Compare(context.Context, *gitlab.PushEvent) (gitlab.ChangedFiles, error) {
	f.calls.Add(1)
	if f.err != nil {
		return gitlab.ChangedFiles{}, f.err
	}
	return gitlab.ChangedFiles{All: []string{"docs/only.md"}, Added: []string{}, Modified: []string{"docs/only.md"}, Removed: []string{}, Source: gitlab.SourceAPI}, nil
}

type fixture struct {
	srv *Server
	api *fakeAPI
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	eng, pols := shippedPolicies(t)
	dd, err := dedup.New()
	if err != nil {
		t.Fatal(err)
	}
	api := &fakeAPI{}
	srv, err := New(Config{Engine: eng, Policies: pols, API: api, Dedup: dd, Metrics: NewMetrics(),
		Secrets: mapSecrets{"team-a/gitlab-webhook/token": "s3cret", "team-a/gitlab-signing/key": "whsec_" + b64("0123456789abcdef0123456789abcdef")}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, api: api}
}

// shippedPolicies builds an engine with opts and a store of the
// repository's policies/.
func shippedPolicies(t testing.TB, opts ...engine.Option) (*engine.Engine, *policy.Store) {
	t.Helper()
	eng, err := engine.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	pols, err := policy.NewStore(eng, filepath.Join("..", "..", "policies"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return eng, pols
}

func b64(s string) string {
	b, _ := json.Marshal([]byte(s))
	return strings.Trim(string(b), `"`)
}

func payload(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "gitlab", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type reqOpt func(*triggersv1.InterceptorRequest)

// request builds an InterceptorRequest for the fixture. Params naming no
// secret (nor insecure) get the token's secretRef, which the request
// carries: a trigger without one is refused.
func request(t testing.TB, fixtureName, event string, params map[string]any, opts ...reqOpt) *triggersv1.InterceptorRequest {
	_, a := params["secretRef"]
	_, b := params["signingSecretRef"]
	_, c := params["insecure"]
	if !a && !b && !c {
		withToken := map[string]any{"secretRef": tokenRef}
		for k, v := range params {
			withToken[k] = v
		}
		params = withToken
	}
	r := &triggersv1.InterceptorRequest{
		Body: payload(t, fixtureName),
		Header: map[string][]string{
			"X-Gitlab-Event":      {event},
			"X-Gitlab-Token":      {"s3cret"},
			"X-Gitlab-Event-Uuid": {fmt.Sprintf("uuid-%d", time.Now().UnixNano())},
			"Content-Type":        {"application/json"},
		},
		InterceptorParams: params,
		Context:           &triggersv1.TriggerContext{EventURL: "http://el-ciel:8080/", EventID: "ev1", TriggerID: triggerID},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

func withHeader(k, v string) reqOpt {
	return func(r *triggersv1.InterceptorRequest) { http.Header(r.Header).Set(k, v) }
}

// signedAt signs the request's body as delivery msg_1 sent at at, with the
// key of the Secret gitlab-signing.
func signedAt(at time.Time) reqOpt {
	return func(r *triggersv1.InterceptorRequest) {
		ts, sig := webhook.Sign([]byte("0123456789abcdef0123456789abcdef"), "msg_1", at, []byte(r.Body))
		h := http.Header(r.Header)
		h.Set("webhook-id", "msg_1")
		h.Set("webhook-timestamp", ts)
		h.Set("webhook-signature", sig)
	}
}

// merged returns a new map holding the entries of ms in turn, a later one
// overriding an earlier one.
func merged(ms ...map[string]any) map[string]any {
	out := map[string]any{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// serve serves r with h and decodes the InterceptorResponse it answers.
func serve(t testing.TB, h http.Handler, r *http.Request) (*httptest.ResponseRecorder, triggersv1.InterceptorResponse) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var ir triggersv1.InterceptorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &ir); err != nil {
		t.Fatalf("not an InterceptorResponse: %q", w.Body.String())
	}
	return w, ir
}

// statusCase is a request's params and changes, and the status code of the
// answer with a part of its message.
type statusCase struct {
	name   string
	params map[string]any
	opts   []reqOpt
	code   codes.Code
	msg    string
}

// wantStatus checks a response's status code and that its message holds msg.
func wantStatus(t testing.TB, resp *triggersv1.InterceptorResponse, code codes.Code, msg string) {
	t.Helper()
	if resp.Status.Code != code || !strings.Contains(resp.Status.Message, msg) {
		t.Errorf("got %s %q; want %s containing %q", resp.Status.Code, resp.Status.Message, code, msg)
	}
}

var tokenRef = map[string]any{"secretName": "gitlab-webhook", "secretKey": "token"}

func TestPairedDecisions(t *testing.T) {
	build := map[string]any{"secretRef": tokenRef, "eventTypes": []any{"Push Hook"}, "policy": "build-on-change"}
	release := map[string]any{"secretRef": tokenRef, "eventTypes": []any{"Tag Push Hook"}, "policy": "release-semver", "changedFiles": "off"}
	tests := []struct {
		name     string
		fixture  string
		event    string
		params   map[string]any
		cont     bool
		code     codes.Code
		msg      string
		apiCalls int32
	}{
		{"source push builds", "push.json", "Push Hook", build, true, codes.OK, "", 0},
		{"docs-only push does not", "docs_only_push.json", "Push Hook", build, false, codes.FailedPrecondition, "policy build-on-change did not return true", 0},
		{"branch delete does not", "branch_delete.json", "Push Hook", build, false, codes.FailedPrecondition, "did not return true", 0},
		{"truncated push completed from the API", "truncated_push.json", "Push Hook", build, false, codes.FailedPrecondition, "did not return true", 1},
		{"semver tag releases", "tag_push.json", "Tag Push Hook", release, true, codes.OK, "", 0},
		{"v1.2 tag does not", "tag_push_not_semver.json", "Tag Push Hook", release, false, codes.FailedPrecondition, "did not return true", 0},
		{"tag push on the build trigger", "tag_push.json", "Tag Push Hook", build, false, codes.FailedPrecondition, `event type "Tag Push Hook" is not allowed`, 0},
		{"inline filter true", "push.json", "Push Hook", map[string]any{"filter": `extensions.changed_files.all.exists(f, f.glob("**/*.go"))`}, true, codes.OK, "", 0},
		{"inline filter false", "push.json", "Push Hook", map[string]any{"filter": `body.ref == "refs/heads/other"`}, false, codes.FailedPrecondition, "the filter did not return true", 0},
		{"changedFiles api", "push.json", "Push Hook", map[string]any{"filter": `extensions.changed_files.source == "api"`, "changedFiles": "api"}, true, codes.OK, "", 1},
		{"changedFiles off", "push.json", "Push Hook", map[string]any{"filter": `extensions.changed_files.source == "none"`, "changedFiles": "off"}, true, codes.OK, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			resp := f.srv.Process(context.Background(), request(t, tt.fixture, tt.event, tt.params))
			if resp.Continue != tt.cont || resp.Status.Code != tt.code || !strings.Contains(resp.Status.Message, tt.msg) {
				t.Errorf("got continue=%v %s %q; want %v %s containing %q", resp.Continue, resp.Status.Code, resp.Status.Message, tt.cont, tt.code, tt.msg)
			}
			if got := f.api.calls.Load(); got != tt.apiCalls {
				t.Errorf("GitLab API calls %d, want %d", got, tt.apiCalls)
			}
			if tt.cont {
				if _, ok := resp.Extensions["push"].(map[string]any); !ok {
					t.Errorf("no extensions.push in %v", resp.Extensions)
				}
			}
		})
	}
}

func TestOverlaysInExtensions(t *testing.T) {
	f := newFixture(t)
	resp := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"policy": "build-on-change"}))
	if !resp.Continue {
		t.Fatal(resp.Status)
	}
	push := resp.Extensions["push"].(map[string]any)
	cf := resp.Extensions["changed_files"].(map[string]any)
	if resp.Extensions["image_tag"] != push["short_sha"] || cf["source"] != "payload" || push["branch"] != "main" {
		t.Errorf("extensions %v", resp.Extensions)
	}
}

func TestBadInput(t *testing.T) {
	signed, stale := signedAt(time.Now()), signedAt(time.Now().Add(-time.Hour))
	signRef := map[string]any{"secretName": "gitlab-signing", "secretKey": "key"}
	tests := []statusCase{
		{"wrong token", map[string]any{"secretRef": tokenRef}, []reqOpt{withHeader("X-Gitlab-Token", "nope")}, codes.InvalidArgument, "X-Gitlab-Token does not match"},
		{"missing token", map[string]any{"secretRef": tokenRef}, []reqOpt{func(r *triggersv1.InterceptorRequest) { delete(r.Header, "X-Gitlab-Token") }}, codes.InvalidArgument, "X-Gitlab-Token"},
		{"missing secret", map[string]any{"secretRef": map[string]any{"secretName": "absent", "secretKey": "token"}}, nil, codes.FailedPrecondition, "absent"},
		{"good signature", map[string]any{"signingSecretRef": signRef}, []reqOpt{signed}, codes.OK, ""},
		{"bad signature", map[string]any{"signingSecretRef": signRef}, []reqOpt{signed, func(r *triggersv1.InterceptorRequest) { r.Body += " " }}, codes.InvalidArgument, "signature"},
		{"stale timestamp", map[string]any{"signingSecretRef": signRef}, []reqOpt{stale}, codes.InvalidArgument, "timestamp"},
		{"unsigned", map[string]any{"signingSecretRef": signRef}, nil, codes.InvalidArgument, "webhook-"},
		{"disallowed event", map[string]any{"eventTypes": []any{"Tag Push Hook"}}, nil, codes.FailedPrecondition, "not allowed"},
		{"malformed JSON", map[string]any{"filter": "true"}, []reqOpt{func(r *triggersv1.InterceptorRequest) { r.Body = `{"ref": ` }}, codes.InvalidArgument, "body"},
		{"wrong field type", map[string]any{"filter": "true"}, []reqOpt{func(r *triggersv1.InterceptorRequest) { r.Body = `{"object_kind":"push","commits":"x"}` }}, codes.InvalidArgument, "commits"},
		{"unknown policy", map[string]any{"policy": "nope"}, nil, codes.InvalidArgument, "unknown policy \"nope\"; loaded policies: build-go-service"},
		{"eventTypes wrong type", map[string]any{"eventTypes": "Push Hook"}, nil, codes.InvalidArgument, "param eventTypes: want a list of strings"},
		{"secretRef wrong type", map[string]any{"secretRef": "gitlab-webhook"}, nil, codes.InvalidArgument, "param secretRef: want an object"},
		{"changedFiles bad value", map[string]any{"changedFiles": "all"}, nil, codes.InvalidArgument, "param changedFiles"},
		{"unknown param", map[string]any{"filtre": "true"}, nil, codes.InvalidArgument, `unknown param "filtre"`},
		{"policy and filter", map[string]any{"policy": "build-on-change", "filter": "true"}, nil, codes.InvalidArgument, "not both"},
		{"broken CEL", map[string]any{"filter": "body.ref =="}, nil, codes.InvalidArgument, "1:12"},
		{"runtime CEL error", map[string]any{"filter": "body.nope"}, nil, codes.InvalidArgument, "no such key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			wantStatus(t, f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", tt.params, tt.opts...)), tt.code, tt.msg)
		})
	}
}

func TestGitLabDownFailsClosedOrOpen(t *testing.T) {
	f := newFixture(t)
	f.api.err = errors.New("comparing in project 42: GitLab answered 503 Service Unavailable")
	params := map[string]any{"policy": "build-on-change"}
	resp := f.srv.Process(context.Background(), request(t, "truncated_push.json", "Push Hook", params))
	if resp.Status.Code != codes.Unavailable || !strings.Contains(resp.Status.Message, "503") || !strings.Contains(resp.Status.Message, "failOpen") {
		t.Errorf("closed: %s %q", resp.Status.Code, resp.Status.Message)
	}
	params["failOpen"] = true
	resp = f.srv.Process(context.Background(), request(t, "truncated_push.json", "Push Hook", params))
	if !resp.Continue || resp.Extensions["changed_files"].(map[string]any)["truncated"] != true {
		t.Errorf("open: %v %v", resp.Status, resp.Extensions)
	}
}

func TestDuplicateDelivery(t *testing.T) {
	f := newFixture(t)
	params := map[string]any{"policy": "build-on-change"}
	same := withHeader("Idempotency-Key", "delivery-1")
	first := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, same))
	second := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, same))
	if !first.Continue || second.Continue || second.Status.Code != codes.FailedPrecondition || !strings.Contains(second.Status.Message, "duplicate delivery") {
		t.Errorf("first %v, second %v %q", first.Continue, second.Continue, second.Status.Message)
	}
	// Another trigger of the same EventListener sees the same delivery once.
	other := func(r *triggersv1.InterceptorRequest) { r.Context.TriggerID = "namespaces/team-a/triggers/other" }
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, same, other)); !r.Continue {
		t.Errorf("another trigger: %v", r.Status)
	}
	// A delivery that was refused is evaluated again on retry.
	bad := withHeader("X-Gitlab-Token", "nope")
	tok := map[string]any{"secretRef": tokenRef, "filter": "true"}
	key := withHeader("Idempotency-Key", "delivery-2")
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", tok, key, bad)); r.Continue {
		t.Fatal("a bad token continued")
	}
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", tok, key)); !r.Continue {
		t.Errorf("the retry was refused: %v", r.Status)
	}
}

func TestHTTPOverTLS(t *testing.T) {
	f := newFixture(t)
	ts := httptest.NewTLSServer(f.srv)
	defer ts.Close()
	client := ts.Client()
	post := func(path string, body []byte) (int, triggersv1.InterceptorResponse) {
		t.Helper()
		resp, err := client.Post(ts.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ir triggersv1.InterceptorResponse
		if err := json.NewDecoder(resp.Body).Decode(&ir); err != nil {
			t.Fatalf("%s: response is not an InterceptorResponse: %v", path, err)
		}
		return resp.StatusCode, ir
	}
	var req []byte
	for _, path := range []string{"/gitlab", "/"} {
		req, _ = json.Marshal(request(t, "push.json", "Push Hook", map[string]any{"secretRef": tokenRef, "policy": "build-on-change"}))
		if code, ir := post(path, req); code != 200 || !ir.Continue {
			t.Errorf("%s: %d %+v", path, code, ir.Status)
		}
	}
	if code, ir := post("/github", req); code != 404 || ir.Status.Code != codes.NotFound {
		t.Errorf("/github: %d %+v", code, ir.Status)
	}
	if code, ir := post("/gitlab", []byte(`{"body": 1`)); code != 400 || ir.Status.Code != codes.InvalidArgument {
		t.Errorf("garbage: %d %+v", code, ir.Status)
	}
	small, _ := New(Config{Engine: f.srv.cfg.Engine, MaxRequestBytes: 1024})
	ts2 := httptest.NewTLSServer(small)
	defer ts2.Close()
	resp, err := ts2.Client().Post(ts2.URL+"/gitlab", "application/json", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: %d", resp.StatusCode)
	}
}

// FuzzHandler sends arbitrary bodies and headers: the handler never
// panics and always answers a well-formed InterceptorResponse.
func FuzzHandler(f *testing.F) {
	f.Add(payload(f, "push.json"), "Push Hook", `{"policy":"build-on-change"}`)
	f.Add(payload(f, "tag_push.json"), "Tag Push Hook", `{"filter":"extensions.push.semver.valid","overlays":[{"key":"v","expression":"extensions.push.tag"}]}`)
	f.Add(`{"object_kind":"push","commits":[{"added":[1]}]}`, "Push Hook", `{"eventTypes":"x"}`)
	f.Add(`[]`, "", `{"changedFiles":"api"}`)
	eng, pols := shippedPolicies(f, engine.WithCostLimit(100_000))
	srv, err := New(Config{Engine: eng, Policies: pols, API: &fakeAPI{}, Secrets: mapSecrets{}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body, event, params string) {
		var p map[string]any
		_ = json.Unmarshal([]byte(params), &p)
		req, _ := json.Marshal(triggersv1.InterceptorRequest{Body: body, Header: map[string][]string{"X-Gitlab-Event": {event}},
			InterceptorParams: p, Context: &triggersv1.TriggerContext{TriggerID: triggerID}})
		for _, b := range [][]byte{req, []byte(body)} {
			w, ir := serve(t, srv, httptest.NewRequest(http.MethodPost, "/gitlab", bytes.NewReader(b)))
			if !ir.Continue && ir.Status.Code == codes.OK {
				t.Fatalf("stop without a status code: %q", w.Body.String())
			}
			if ir.Status.Code == codes.Internal {
				t.Fatalf("internal error: %s", ir.Status.Message)
			}
		}
	})
}

// TestTriggersExpressionsThroughHandler holds issue 19 through the HTTP
// handler: expressions Tekton Triggers evaluates, once refused at compile
// time by a cost estimate, give Triggers' results on GitLab's documented
// push, as a filter and as overlays.
func TestTriggersExpressionsThroughHandler(t *testing.T) {
	f := newFixture(t)
	params := map[string]any{
		"filter": `body.ref.substring(11) == 'master' && lists.range(size(body.commits)) == [0, 1]`,
		"overlays": []any{
			map[string]any{"key": "branch", "expression": `body.ref.substring(11)`},
			map[string]any{"key": "last", "expression": `body.ref.substring(body.ref.lastIndexOf('/') + 1)`},
			map[string]any{"key": "indexes", "expression": `lists.range(size(body.commits))`},
			map[string]any{"key": "short", "expression": `lists.range(size(body.commits)).map(i, body.commits[i].id.substring(0, 7))`},
		},
	}
	b, err := json.Marshal(request(t, "documented_push.json", "Push Hook", params))
	if err != nil {
		t.Fatal(err)
	}
	_, resp := serve(t, f.srv, httptest.NewRequest(http.MethodPost, "/gitlab", bytes.NewReader(b)))
	if !resp.Continue {
		t.Fatalf("continue = false: %s %s", resp.Status.Code, resp.Status.Message)
	}
	want := map[string]any{"branch": "master", "last": "master", "indexes": []any{0.0, 1.0}, "short": []any{"b6568db", "da15608"}}
	for k, v := range want {
		if diff := cmp.Diff(v, resp.Extensions[k]); diff != "" {
			t.Errorf("extensions.%s (-want +got):\n%s", k, diff)
		}
	}
}
