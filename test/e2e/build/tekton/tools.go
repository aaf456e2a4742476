//go:build tools

// Package tekton pins the Tekton Pipelines and Triggers releases the
// end-to-end suite installs: Prepare copies these modules, at these
// versions, and ko resolves their own config/ into the cluster's
// registry (the release configuration, as a user installs Tekton).
package tekton

import (
	_ "github.com/tektoncd/pipeline/cmd/controller"
	_ "github.com/tektoncd/triggers/cmd/eventlistenersink"
)
