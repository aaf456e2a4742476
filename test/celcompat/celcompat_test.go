package celcompat_test

import (
	"context"
	"fmt"
	"net/http"

	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
)

const namespace = "ci"

// payload is a GitLab push event, trimmed, plus fields for the functions.
const payload = `{
  "object_kind": "push",
  "ref": "refs/heads/feature/JIRA-12_new",
  "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
  "user_username": "jsmith",
  "project_id": 15,
  "total_commits_count": 4,
  "project": {"path_with_namespace": "mike/diaspora", "default_branch": "master", "web_url": "http://example.com/mike/diaspora"},
  "commits": [
    {"id": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327", "message": "Update Catalan translation", "added": ["CHANGELOG"], "modified": ["app/controller/application.rb"], "removed": []},
    {"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "fixed readme", "added": [], "modified": ["README.md", "docs/a.md"], "removed": ["old.txt"]}
  ],
  "unicode": "héllo wörld",
  "b64": "aGVsbG8gd29ybGQ=",
  "b64bin": "/w==",
  "json": "{\"a\": {\"b\": [1, 2.5, \"x\", null, true]}, \"n\": 12345678901}",
  "badjson": "{\"a\":",
  "yaml": "a: 1\nb:\n  - x\n  - 2\nc: {d: true}\n",
  "url": "https://user:pw@gitlab.example.com:8443/group/proj.git?x=1&x=2&y=%20z#frag",
  "html": "<b>&</b>",
  "numbers": [1, 2, 3],
  "empty": [],
  "nested": {"a": [{"b": 1}, {"b": 2}]}
}`

var header = http.Header{
	"X-Gitlab-Event": {"Push Hook"},
	"X-Gitlab-Token": {"s3cret"},
	"X-Multi":        {"one", "two"},
	"Content-Type":   {"application/json"},
}

const requestURL = "https://el.example.com/hooks?trigger=build"

var extensions = map[string]any{
	"changed_files": map[string]any{"all": []any{"src/main.go", "src/README.md", "docs/a.md"}},
	"note":          "from an earlier interceptor",
}

// secrets holds namespace/name/key → value for both implementations.
var secrets = map[string]string{
	"ci/gitlab-webhook/token":    "s3cret",
	"other/gitlab-webhook/token": "other",
}

type triggersSecrets struct{}

func (triggersSecrets) Get(_ context.Context, ns string, sr *triggersv1.SecretRef) ([]byte, error) {
	v, ok := secrets[ns+"/"+sr.SecretName+"/"+sr.SecretKey]
	if !ok {
		return nil, fmt.Errorf("no secret %s/%s", ns, sr.SecretName)
	}
	return []byte(v), nil
}

type cielSecrets struct{}

func (cielSecrets) GetSecret(_ context.Context, ns, name, key string) ([]byte, error) {
	v, ok := secrets[ns+"/"+name+"/"+key]
	if !ok {
		return nil, fmt.Errorf("no secret %s/%s", ns, name)
	}
	return []byte(v), nil
}

// payloadRequest is the push above, as both interceptors receive it.
func payloadRequest() request {
	return request{body: []byte(payload), header: header, url: requestURL, ext: extensions}
}
