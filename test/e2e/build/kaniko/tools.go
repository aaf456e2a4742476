//go:build tools

// Package kaniko pins the Kaniko executor the end-to-end harness builds.
package kaniko

import _ "github.com/GoogleContainerTools/kaniko/cmd/executor"
