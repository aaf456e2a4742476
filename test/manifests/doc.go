// Package manifests tests the Tekton YAML of the repository: the Tasks in
// tasks/, the Pipelines in pipelines/ and the Triggers objects in
// config/triggers/.
//
// Every document is decoded strictly (an unknown or duplicated field is an
// error) into Tekton's own Go types and passes their Validate with the
// feature flags a cluster running these Pipelines sets (enable-api-fields:
// beta, for matrix and array results). On top of Tekton's validation a lint
// enforces the catalog conventions and this project's rules (descriptions,
// pinned images, explicit commands, no variables in scripts, strict
// security contexts, READMEs that document every param, result and
// workspace with an example that validates), Pipelines are checked against
// the Tasks they reference, and the EventListener is resolved end to end
// with Tekton Triggers' own code: webhook payload, the extensions the ciel
// interceptor adds, bindings, template, and the PipelineRun it creates, down
// to the node selector Tekton gives each matrix combination.
package manifests
