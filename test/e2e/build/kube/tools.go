//go:build tools

// Package kube pins the Kubernetes commands the end-to-end harness builds:
// the control plane, the scheduler, and the node components (kubelet,
// kube-proxy) of the suite's real nodes.
package kube

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
