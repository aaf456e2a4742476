//go:build tools

// Package tools pins module dependencies that packages adopt as they are written.
package tools

import (
	_ "github.com/google/cel-go/cel"
	_ "github.com/google/cel-go/ext"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/crane"
	_ "gitlab.com/gitlab-org/api/client-go"
	_ "github.com/tektoncd/triggers/pkg/apis/triggers/v1beta1"
	_ "github.com/tektoncd/triggers/pkg/interceptors/cel"
	_ "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	_ "github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	_ "k8s.io/client-go/kubernetes"
	_ "github.com/spf13/cobra"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "sigs.k8s.io/yaml"
	_ "github.com/google/go-cmp/cmp"
	_ "golang.org/x/mod/semver"
	_ "github.com/Masterminds/semver/v3"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/tidwall/sjson"
	_ "golang.org/x/sync/singleflight"
	_ "k8s.io/client-go/informers"
	_ "github.com/tektoncd/pipeline/pkg/client/informers/externalversions"
)
