//go:build tools

// Package tools pins module dependencies that packages adopt as they are written.
package tools

import (
	_ "github.com/Masterminds/semver/v3"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/google/cel-go/cel"
	_ "github.com/google/cel-go/ext"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/google/go-containerregistry/pkg/crane"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/spf13/cobra"
	_ "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	_ "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	_ "github.com/tektoncd/pipeline/pkg/client/informers/externalversions"
	_ "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	_ "github.com/tektoncd/triggers/pkg/interceptors/cel"
	_ "github.com/tidwall/sjson"
	_ "gitlab.com/gitlab-org/api/client-go"
	_ "golang.org/x/mod/semver"
	_ "golang.org/x/sync/singleflight"
	_ "k8s.io/client-go/informers"
	_ "k8s.io/client-go/kubernetes"
	_ "sigs.k8s.io/yaml"
)
