//go:build tools

// Package tekton pins the Tekton commands the end-to-end harness builds.
package tekton

import (
	_ "github.com/tektoncd/pipeline/cmd/controller"
	_ "github.com/tektoncd/triggers/cmd/eventlistenersink"
)
