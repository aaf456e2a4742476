package manifests

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ciel-ci/ciel/interceptor/gitlab"
	triggersv1 "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	tcel "github.com/tektoncd/triggers/pkg/interceptors/cel"
)

// noSecrets: the pin filters read no Secret.
type noSecrets struct{}

func (noSecrets) Get(context.Context, string, *triggersv1.SecretRef) ([]byte, error) {
	return nil, errors.New("the project pin reads no Secret")
}

// TestPerProjectTriggers: in config/triggers-per-project, each project's
// triggers check that project's own webhook token, then accept only
// payloads naming that project (path and ID, evaluated by Tekton Triggers'
// own CEL interceptor): a token cannot build another project, whose image
// repository, clone URL and commit statuses derive from the payload's
// project. The PipelineRuns bind that project's registry and Git Secrets.
func TestPerProjectTriggers(t *testing.T) {
	o := decodeAll(t)
	el, ok := o.listeners["ciel-gitlab-projects"]
	if !ok {
		t.Fatal("no EventListener ciel-gitlab-projects")
	}
	if len(el.Spec.Triggers) < 4 {
		t.Fatalf("%d triggers, want a build and a release trigger for each of two example projects", len(el.Spec.Triggers))
	}
	push, err := os.ReadFile(filepath.Join(gitlabFixtures, "push.json"))
	if err != nil {
		t.Fatal(err)
	}
	tagPush, err := os.ReadFile(filepath.Join(gitlabFixtures, "tag_push.json"))
	if err != nil {
		t.Fatal(err)
	}
	// The same push claiming another project, under either field.
	forge := func(body []byte, path string, id float64) []byte {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		m["project_id"] = id
		m["project"].(map[string]any)["id"] = id
		m["project"].(map[string]any)["path_with_namespace"] = path
		b, _ := json.Marshal(m)
		return b
	}
	secretOf := map[string]string{} // webhook Secret -> project it is pinned to
	resolved := 0                   // triggers that accept the fixtures' project
	for _, tr := range el.Spec.Triggers {
		t.Run(tr.Name, func(t *testing.T) {
			if len(tr.Interceptors) != 2 || tr.Interceptors[0].Ref.Name != "ciel" || tr.Interceptors[1].Ref.Name != "cel" {
				t.Fatalf("interceptors %+v, want the ciel interceptor (token, policy) then Triggers' cel (project pin)", tr.Interceptors)
			}
			var secretRef struct{ SecretName, SecretKey string }
			var filter, event string
			for _, p := range tr.Interceptors[0].Params {
				switch p.Name {
				case "secretRef":
					roundTripRaw(t, p.Value.Raw, &secretRef)
				case "eventTypes":
					var evs []string
					roundTripRaw(t, p.Value.Raw, &evs)
					event = evs[0]
				}
			}
			for _, p := range tr.Interceptors[1].Params {
				if p.Name == "filter" {
					roundTripRaw(t, p.Value.Raw, &filter)
				}
			}
			body := push
			if event == "Tag Push Hook" {
				body = tagPush
			}
			project, id := pinnedProject(t, filter)
			if prev, ok := secretOf[secretRef.SecretName]; ok && prev != project {
				t.Errorf("webhook Secret %s serves %s and %s: one token per project", secretRef.SecretName, prev, project)
			}
			secretOf[secretRef.SecretName] = project
			if !strings.HasSuffix(secretRef.SecretName, strings.ReplaceAll(project, "/", "-")) {
				t.Errorf("webhook Secret %s is not named for project %s", secretRef.SecretName, project)
			}

			// The pin, evaluated by Triggers' CEL interceptor on what the
			// ciel interceptor hands on.
			accepts := func(b []byte) bool {
				ev, err := gitlab.Decode(event, b)
				if err != nil {
					t.Fatal(err)
				}
				req := &triggersv1.InterceptorRequest{
					Body:              string(b),
					Header:            map[string][]string{"X-Gitlab-Event": {event}},
					Extensions:        interceptorExtensions(t, ev.Push),
					InterceptorParams: map[string]any{"filter": filter},
					Context:           &triggersv1.TriggerContext{TriggerID: "namespaces/ci/triggers/" + tr.Name},
				}
				resp := tcel.NewInterceptor(noSecrets{}).Process(context.Background(), req)
				if resp.Status.Code != 0 && !strings.Contains(resp.Status.Message, "expression") {
					t.Fatalf("the pin filter failed: %s", resp.Status.Message)
				}
				return resp.Continue
			}
			own := project == "acme/payments-api" && id == 42 // the fixtures' project
			if got := accepts(body); got != own {
				t.Errorf("the fixture payload of acme/payments-api (42): continue = %v, want %v", got, own)
			}
			for _, f := range []struct {
				path string
				id   int64
			}{{project, id}, {project, id + 1}, {"acme/payments-api", 42}, {"acme/web", 43}, {"acme/web", 42}, {"acme/payments-api", 43}, {"other/app", id}} {
				want := f.path == project && f.id == id
				if got := accepts(forge(body, f.path, float64(f.id))); got != want {
					t.Errorf("a payload naming %s (%d): continue = %v, want %v (pinned to %s, %d)", f.path, f.id, got, want, project, id)
				}
			}
			if !own {
				return
			}
			resolved++
			pr := resolvePipelineRun(t, o, tr, event, body)
			slug := strings.ReplaceAll(project, "/", "-")
			bound := map[string]string{}
			for _, w := range pr.Spec.Workspaces {
				if w.Secret != nil {
					bound[w.Name] = w.Secret.SecretName
				}
			}
			if bound["dockerconfig"] != "ciel-registry-"+slug || bound["git-auth"] != "ciel-git-"+slug {
				t.Errorf("Secrets bound %v, want the project's own ciel-registry-%s and ciel-git-%s", bound, slug, slug)
			}
			if image := runParam(pr, "image").StringVal; image != registryFromBinding+"/"+project {
				t.Errorf("image %q, want %s/%s", image, registryFromBinding, project)
			}
		})
	}
	if resolved != 2 {
		t.Errorf("%d triggers accept acme/payments-api (42), want its build and release triggers", resolved)
	}
	if len(secretOf) < 2 {
		t.Errorf("webhook Secrets %v: want one per project", secretOf)
	}
}

// pinnedProject reads the project path and ID a pin filter names.
func pinnedProject(t *testing.T, filter string) (string, int64) {
	t.Helper()
	m := regexp.MustCompile(`^extensions\.push\.project_path == '([^']+)' &&\s+int\(extensions\.push\.project_id\) == ([0-9]+)\s*$`).FindStringSubmatch(filter)
	if m == nil {
		t.Fatalf("filter %q does not pin extensions.push.project_path and project_id", filter)
	}
	id, _ := strconv.ParseInt(m[2], 10, 64)
	return m[1], id
}

func roundTripRaw(t *testing.T, raw []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatal(err)
	}
}
