package manifests

import (
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/triggers/pkg/apis/triggers/contexts"
)

// TestValidate decodes every manifest strictly and validates it as Tekton's
// admission webhooks would (defaults first, then Validate).
func TestValidate(t *testing.T) {
	o := decodeAll(t)
	ctx := validationContext(t)
	tasks, pipelines := defaulted(ctx, o.tasks), defaulted(ctx, o.pipelines)
	for _, name := range sortedKeys(tasks) {
		if err := tasks[name].Validate(ctx); err != nil {
			t.Errorf("Task %s (%s): %v", name, o.paths["Task/"+name], err)
		}
	}
	for _, name := range sortedKeys(pipelines) {
		if err := pipelines[name].Validate(ctx); err != nil {
			t.Errorf("Pipeline %s: %v", name, err)
		}
	}
	for _, name := range sortedKeys(o.listeners) {
		el := o.listeners[name].DeepCopy()
		el.SetDefaults(contexts.WithUpgradeViaDefaulting(ctx))
		if err := el.Validate(ctx); err != nil {
			t.Errorf("EventListener %s: %v", name, err)
		}
	}
	for _, name := range sortedKeys(o.bindings) {
		if err := o.bindings[name].DeepCopy().Validate(ctx); err != nil {
			t.Errorf("TriggerBinding %s: %v", name, err)
		}
	}
	for _, name := range sortedKeys(o.templates) {
		tt := o.templates[name].DeepCopy()
		if err := tt.Validate(ctx); err != nil {
			t.Errorf("TriggerTemplate %s: %v", name, err)
		}
		// The embedded PipelineRuns, rendered with Triggers' own code.
		for i, raw := range placeholderResources(tt) {
			pr := &pipelinev1.PipelineRun{}
			if err := strict(raw, pr); err != nil {
				t.Errorf("TriggerTemplate %s resourcetemplates[%d]: strict decoding: %v", name, i, err)
				continue
			}
			if pr.APIVersion != "tekton.dev/v1" || pr.Kind != "PipelineRun" {
				t.Errorf("TriggerTemplate %s resourcetemplates[%d] is %s %s, want a tekton.dev/v1 PipelineRun", name, i, pr.APIVersion, pr.Kind)
			}
			if pr.Name == "" {
				pr.Name = pr.GenerateName + "x7k2q" // as the API server does before admission
			}
			pr.SetDefaults(ctx)
			if err := pr.Validate(ctx); err != nil {
				t.Errorf("TriggerTemplate %s resourcetemplates[%d]: %v", name, i, err)
			}
		}
	}
}

// TestStrictDecodingRejects proves the decoding above is strict: what a
// typo or a wrong nesting gives is an error, not a silently dropped field.
func TestStrictDecodingRejects(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown field", "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\nspec:\n  steps:\n    - name: a\n      image: x:1\n      comand: [x]\n", "comand"},
		{"duplicate field", "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\nmetadata: {name: y}\n", "metadata"},
		{"wrong nesting", "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: x}\nsteps: []\n", "steps"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := strict([]byte(tc.yaml), &pipelinev1.Task{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("strict decoding: %v, want an error about %q", err, tc.want)
			}
		})
	}
}
