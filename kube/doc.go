// Package kube is previewd's thin action layer on Kubernetes and Helm: it
// names preview namespaces, creates, lists and deletes the namespaces that
// previewd owns, installs and upgrades a preview's Helm release, and waits
// for the release's Deployments to become ready (failing fast when they
// cannot).
//
// It makes no decisions about whether to act; the reconciler does. It does
// enforce ownership: a namespace without previewd's labels for the
// configured instance is never adopted and never deleted (model.ErrNotOwned).
package kube
