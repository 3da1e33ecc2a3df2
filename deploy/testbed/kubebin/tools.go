//go:build tools

// Package kubebin pins the Kubernetes control-plane binaries that previewd's
// test bed runs. It is a separate module so that the daemon never imports
// k8s.io/kubernetes; deploy/testbed/build-kube.sh builds from it.
package kubebin

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
