package server

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	"google.golang.org/grpc/codes"

	"github.com/ciel-ci/ciel/interceptor/webhook"
)

// setBody rewrites the payload with the replacer.
func setBody(r *strings.Replacer) reqOpt {
	return func(req *triggersv1.InterceptorRequest) { req.Body = r.Replace(req.Body) }
}

func TestTriggerWithoutSecretRefused(t *testing.T) {
	f := newFixture(t)
	resp := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"insecure": false, "filter": "true"}))
	if resp.Continue || resp.Status.Code != codes.FailedPrecondition || !strings.Contains(resp.Status.Message, "neither secretRef nor signingSecretRef") {
		t.Errorf("no secret: %v %s %q", resp.Continue, resp.Status.Code, resp.Status.Message)
	}
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"insecure": true, "filter": "true"})); !r.Continue {
		t.Errorf("insecure: true: %v", r.Status)
	}
	r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"insecure": true, "secretRef": tokenRef}))
	if r.Continue || r.Status.Code != codes.InvalidArgument || !strings.Contains(r.Status.Message, "remove insecure") {
		t.Errorf("insecure with a secretRef: %v", r.Status)
	}
}

// TestSignedReplayIsDuplicate: a captured signed delivery resent with a
// fresh Idempotency-Key is a duplicate: dedup keys on the signed webhook-id.
func TestSignedReplayIsDuplicate(t *testing.T) {
	f := newFixture(t)
	key := []byte("0123456789abcdef0123456789abcdef")
	params := map[string]any{"signingSecretRef": map[string]any{"secretName": "gitlab-signing", "secretKey": "key"}, "filter": "true"}
	signed := func(id, idem string) reqOpt {
		return func(r *triggersv1.InterceptorRequest) {
			ts, sig := webhook.Sign(key, id, time.Now(), []byte(r.Body))
			h := http.Header(r.Header)
			h.Set("webhook-id", id)
			h.Set("webhook-timestamp", ts)
			h.Set("webhook-signature", sig)
			h.Set("Idempotency-Key", idem)
		}
	}
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, signed("msg_1", "k1"))); !r.Continue {
		t.Fatal(r.Status)
	}
	replay := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, signed("msg_1", "k-fresh")))
	if replay.Continue || !strings.Contains(replay.Status.Message, "duplicate delivery msg_1") {
		t.Errorf("replay with a fresh Idempotency-Key: %v %q", replay.Continue, replay.Status.Message)
	}
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, signed("msg_2", "k1"))); !r.Continue {
		t.Errorf("a new signed delivery reusing an Idempotency-Key: %v", r.Status)
	}
}

func TestLongDeliveryIDRefused(t *testing.T) {
	f := newFixture(t)
	for _, h := range []string{"Idempotency-Key", "X-Gitlab-Event-Uuid"} {
		resp := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"filter": "true"},
			withHeader("Idempotency-Key", ""), withHeader(h, strings.Repeat("x", MaxDeliveryIDBytes+1))))
		if resp.Continue || resp.Status.Code != codes.InvalidArgument || !strings.Contains(resp.Status.Message, "over the limit of 256") {
			t.Errorf("%s of 257 bytes: %v %q", h, resp.Continue, resp.Status.Message)
		}
	}
	if r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"filter": "true"},
		withHeader("Idempotency-Key", strings.Repeat("y", MaxDeliveryIDBytes)))); !r.Continue {
		t.Errorf("a 256-byte ID: %v", r.Status)
	}
}

var nameSuffixRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// TestDeliveryNameSuffix: extensions.delivery.name_suffix is the same for
// every copy of a delivery on any replica (it depends on the trigger and
// delivery only), differs between triggers and deliveries, and is a valid
// DNS-1123 label.
func TestDeliveryNameSuffix(t *testing.T) {
	suffix := func(f *fixture, opts ...reqOpt) string {
		t.Helper()
		r := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"filter": "true"}, opts...))
		if !r.Continue {
			t.Fatal(r.Status)
		}
		s, _ := r.Extensions["delivery"].(map[string]any)["name_suffix"].(string)
		if !nameSuffixRE.MatchString(s) {
			t.Fatalf("name_suffix %q, want 16 lowercase hex characters", s)
		}
		return s
	}
	replicaA, replicaB := newFixture(t), newFixture(t)
	d1 := withHeader("Idempotency-Key", "delivery-1")
	a := suffix(replicaA, d1)
	if b := suffix(replicaB, d1); a != b {
		t.Errorf("two replicas: %s and %s for one delivery", a, b)
	}
	if b := suffix(replicaB, withHeader("Idempotency-Key", "delivery-2")); a == b {
		t.Error("two deliveries share a name suffix")
	}
	other := func(r *triggersv1.InterceptorRequest) { r.Context.TriggerID = "namespaces/team-a/triggers/other" }
	if b := suffix(replicaB, d1, other); a == b {
		t.Error("two triggers share a name suffix for one delivery")
	}
	if got, want := a, nameSuffix(triggerID, "delivery-1", ""); got != want {
		t.Errorf("name_suffix %s, want %s", got, want)
	}
	// With no delivery ID the event ID stands in; with neither, a random
	// suffix: never one name for two unidentified requests.
	if x, y := nameSuffix(triggerID, "", "ev1"), nameSuffix(triggerID, "", "ev2"); x == y || !nameSuffixRE.MatchString(x) {
		t.Errorf("event IDs: %s %s", x, y)
	}
	if x, y := nameSuffix(triggerID, "", ""), nameSuffix(triggerID, "", ""); x == y || !nameSuffixRE.MatchString(x) {
		t.Errorf("no ID at all: %s %s", x, y)
	}
}

type fakeCommits struct {
	calls  atomic.Int32
	exists bool
}

func (f *fakeCommits) CommitExists(_ context.Context, path, sha string) (bool, error) {
	f.calls.Add(1)
	return f.exists && path == "acme/payments-api" && sha == "c95fc90a82e297e2b5fcd3722b931d149a388884", nil
}

func TestProjectChecks(t *testing.T) {
	otherHTTP := strings.NewReplacer("https://gitlab.example.com/acme/payments-api.git", "https://evil.example.net/acme/payments-api.git")
	otherPath := strings.NewReplacer("https://gitlab.example.com/acme/payments-api.git", "https://gitlab.example.com/victim/secret-repo.git")
	otherSSH := strings.NewReplacer("git@gitlab.example.com:acme/payments-api.git", "git@evil.example.net:acme/payments-api.git")
	otherWeb := strings.NewReplacer(`"web_url": "https://gitlab.example.com/acme/payments-api"`, `"web_url": "https://gitlab.example.com/victim/x"`)
	dotdot := strings.NewReplacer("https://gitlab.example.com/acme/payments-api.git", "https://gitlab.example.com/acme/payments-api/../../victim/x.git")
	hosts := map[string]any{"allowedHosts": []any{"gitlab.example.com"}}
	noCommit := strings.NewReplacer(`"c95fc90a82e297e2b5fcd3722b931d149a388884"`, `""`)
	dotSegment := strings.NewReplacer("acme/payments-api", "acme/./payments-api")
	emptySegment := strings.NewReplacer("acme/payments-api", "acme//payments-api")
	upper := strings.NewReplacer("acme/payments-api", "acme/Payments-API")
	with := func(m map[string]any, k string, v any) map[string]any {
		return merged(map[string]any{"filter": "true"}, m, map[string]any{k: v})
	}
	tests := []struct {
		name    string
		params  map[string]any
		opts    []reqOpt
		exists  bool
		code    codes.Code
		msg     string
		commits int32
	}{
		{"own project on the allowed host", hosts, nil, false, codes.OK, "", 0},
		{"clone URL on another host", hosts, []reqOpt{setBody(otherHTTP)}, false, codes.InvalidArgument, "project.git_http_url", 0},
		{"clone URL of another project", map[string]any{"filter": "true"}, []reqOpt{setBody(otherPath)}, false, codes.InvalidArgument, "not the payload's project", 0},
		{"dot-dot in the clone URL", map[string]any{"filter": "true"}, []reqOpt{setBody(dotdot)}, false, codes.InvalidArgument, "git_http_url", 0},
		{"SSH URL on another host", hosts, []reqOpt{setBody(otherSSH)}, false, codes.InvalidArgument, "project.git_ssh_url", 0},
		{"web URL of another project", map[string]any{"filter": "true"}, []reqOpt{setBody(otherWeb)}, false, codes.InvalidArgument, "project.web_url", 0},
		{"server's allowed hosts", map[string]any{"filter": "true"}, []reqOpt{setBody(otherHTTP)}, false, codes.InvalidArgument, "gitlab.example.com", 0},
		{"project allowed", with(nil, "allowedProjects", []any{"acme/**", "!acme/sandbox"}), nil, false, codes.OK, "", 0},
		{"project not allowed", with(nil, "allowedProjects", []any{"team-b/**"}), nil, false, codes.FailedPrecondition, `project "acme/payments-api" is not in allowedProjects`, 0},
		{"bad allowedProjects", with(nil, "allowedProjects", []any{"/x"}), nil, false, codes.InvalidArgument, "param allowedProjects", 0},
		{"commit verified", with(nil, "verifyCommit", true), nil, true, codes.OK, "", 1},
		{"commit unknown to GitLab", with(nil, "verifyCommit", true), nil, false, codes.InvalidArgument, "is not in project acme/payments-api", 1},
		{"verifyCommit on a push naming no commit", with(nil, "verifyCommit", true), []reqOpt{setBody(noCommit)}, true, codes.InvalidArgument, "names no commit", 0},
		{"project path with a dot segment", map[string]any{"filter": "true"}, []reqOpt{setBody(dotSegment)}, false, codes.InvalidArgument, "project.path_with_namespace", 0},
		{"project path with an empty segment", map[string]any{"filter": "true"}, []reqOpt{setBody(emptySegment)}, false, codes.InvalidArgument, "project.path_with_namespace", 0},
		{"exclusion holds whatever the case", with(nil, "allowedProjects", []any{"acme/**", "!acme/payments-api"}), []reqOpt{setBody(upper)}, false, codes.FailedPrecondition, "is not in allowedProjects", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			gh, _ := ParseGitHost("https://gitlab.example.com/")
			commits := &fakeCommits{exists: tt.exists}
			f.srv.cfg.AllowedHosts = []GitHost{gh}
			f.srv.cfg.Commits = commits
			params := tt.params
			if params["filter"] == nil {
				params = with(params, "filter", "true")
			}
			resp := f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", params, tt.opts...))
			wantStatus(t, resp, tt.code, tt.msg)
			if commits.calls.Load() != tt.commits {
				t.Errorf("%d commit lookups, want %d", commits.calls.Load(), tt.commits)
			}
		})
	}
}

func TestCheckRepoURL(t *testing.T) {
	root, _ := ParseGitHost("gitlab.example.com")
	sub, _ := ParseGitHost("https://example.com/gitlab/")
	port, _ := ParseGitHost("gitlab.example.com:8443")
	tests := []struct {
		url   string
		hosts []GitHost
		ok    bool
	}{
		{"https://gitlab.example.com/g/p.git", []GitHost{root}, true},
		{"https://GITLAB.example.com/g/p.git", []GitHost{root}, true},
		{"https://gitlab.example.com:8443/g/p.git", []GitHost{root}, true},
		{"https://gitlab.example.com:8443/g/p.git", []GitHost{port}, true},
		{"https://gitlab.example.com/g/p.git", []GitHost{port}, false},
		{"https://example.com/gitlab/g/p.git", []GitHost{sub}, true},
		{"https://example.com/g/p.git", []GitHost{sub}, false},
		{"https://gitlab.example.com/g/p.git?x=1", []GitHost{root}, false},
		{"https://gitlab.example.com/g/p.git", nil, true},
		{"https://anything.example/g/p.git", nil, true},
		{"https://gitlab.example.com/g/q.git", nil, false},
		{"https://gitlab.example.com/g/p%2e.git", nil, false},
		{"file:///g/p.git", nil, false},
		{"git@gitlab.example.com:g/p.git", []GitHost{root}, true},
		{"ssh://git@gitlab.example.com:2222/g/p.git", []GitHost{root}, true},
		{"git@evil.example:g/p.git", []GitHost{root}, false},
		{"https://user@evil.example/g/p.git", []GitHost{root}, false},
		// git's host is before the first ':': evil.example here.
		{"evil.example:foo@gitlab.example.com:g/p.git", []GitHost{root}, false},
		{"evil.example:foo@gitlab.example.com:g/p.git", nil, false},
		{`git@gitlab.example.com:g\p.git`, []GitHost{root}, false},
	}
	for _, tt := range tests {
		err := checkRepoURL(tt.url, "g/p", ".git", tt.hosts)
		if (err == nil) != tt.ok {
			t.Errorf("%s on %v: %v, want ok=%v", tt.url, tt.hosts, err, tt.ok)
		}
	}
}

func TestShortCutsAttackerStrings(t *testing.T) {
	s := short(strings.Repeat("é", 1000))
	if len(s) > maxLogString+32 || !strings.HasSuffix(s, "(2000 bytes)") || !strings.HasPrefix(s, "é") {
		t.Errorf("short: %d bytes %q", len(s), s[len(s)-20:])
	}
	if short("abc") != "abc" {
		t.Error("short changed a short string")
	}
}

// TestLogsBoundedAndRefusalsLogged: requests refused before Process (bad
// JSON, wrong method) are logged, and no log line carries more than a
// bounded piece of an attacker's header.
func TestLogsBoundedAndRefusalsLogged(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	f.srv.logger = slog.New(slog.NewJSONHandler(&logs, nil))
	huge := strings.Repeat("A", 100<<10)
	f.srv.Process(context.Background(), request(t, "push.json", "Push Hook", map[string]any{"eventTypes": []any{"Tag Push Hook"}},
		withHeader("X-Gitlab-Event", huge), withHeader("X-Gitlab-Event-Uuid", huge)))
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/gitlab", strings.NewReader(`{"body": `+huge)))
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("bad JSON answered %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	f.srv.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/gitlab", nil))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	refused := 0
	for _, l := range lines {
		if len(l) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s…", len(l), l)
		}
		if strings.Contains(l, `"msg":"request refused"`) {
			refused++
		}
	}
	if refused != 2 {
		t.Errorf("%d refusals logged, want 2 (bad JSON, GET):\n%s", refused, logs.String())
	}
}

// FuzzCheckRepoURL: the clone-URL check never panics, and whatever it
// accepts names the project: its path ends with /<project>.git and its
// host is the allowed one.
func FuzzCheckRepoURL(f *testing.F) {
	for _, s := range []string{"https://gitlab.example.com/g/p.git", "git@gitlab.example.com:g/p.git", "ssh://git@gitlab.example.com:2222/g/p.git",
		"https://gitlab.example.com/g/p.git?x", "file:///g/p.git", "/tmp/g/p.git", "https://a@b@gitlab.example.com/g/p.git", "git@:g/p.git", "%", ""} {
		f.Add(s)
	}
	allowed, _ := ParseGitHost("gitlab.example.com")
	f.Fuzz(func(t *testing.T, raw string) {
		if err := checkRepoURL(raw, "g/p", ".git", []GitHost{allowed}); err != nil {
			return
		}
		host, path, err := splitRepoURL(raw)
		if err != nil || path != "/g/p.git" || !hostMatches(host, "gitlab.example.com") {
			t.Errorf("accepted %q: host %q path %q (%v)", raw, host, path, err)
		}
		// Independently, as net/url (and so git's HTTP transport) reads it.
		if strings.Contains(raw, "://") {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatalf("accepted %q, which net/url cannot parse: %v", raw, err)
			}
			if !strings.EqualFold(u.Hostname(), "gitlab.example.com") || u.Path != "/g/p.git" {
				t.Errorf("accepted %q, which net/url reads as host %q path %q", raw, u.Hostname(), u.Path)
			}
		}
	})
}

// A merge request names its target project: the same host and path checks
// apply to it as to a push, so a forged MR cannot clone another repository.
func TestProjectChecksMergeRequest(t *testing.T) {
	otherHTTP := strings.NewReplacer("https://gitlab.example.com/acme/payments-api.git", "https://evil.example.net/acme/payments-api.git")
	otherPath := strings.NewReplacer("https://gitlab.example.com/acme/payments-api.git", "https://gitlab.example.com/victim/secret-repo.git")
	tests := []statusCase{
		{"own project", map[string]any{"filter": "true"}, nil, codes.OK, ""},
		{"clone URL on another host", map[string]any{"filter": "true"}, []reqOpt{setBody(otherHTTP)}, codes.InvalidArgument, "project.git_http_url"},
		{"clone URL of another project", map[string]any{"filter": "true"}, []reqOpt{setBody(otherPath)}, codes.InvalidArgument, "not the payload's project"},
		{"project not allowed", map[string]any{"filter": "true", "allowedProjects": []any{"team-b/**"}}, nil, codes.FailedPrecondition, "allowedProjects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			gh, _ := ParseGitHost("https://gitlab.example.com/")
			f.srv.cfg.AllowedHosts = []GitHost{gh}
			wantStatus(t, f.srv.Process(context.Background(), request(t, "merge_request.json", "Merge Request Hook", tt.params, tt.opts...)), tt.code, tt.msg)
		})
	}
}
