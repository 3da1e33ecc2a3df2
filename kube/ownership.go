package kube

import (
	"errors"
	"fmt"

	"github.com/previewd/previewd/reconcile/model"
	corev1 "k8s.io/api/core/v1"
)

// Ownership labels and annotations that previewd puts on every namespace it
// creates. A namespace is previewd's (for one instance) only if it carries
// LabelManagedBy=ManagedBy and LabelInstance=<instance>.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "previewd"
	// LabelInstance separates several previewd deployments sharing a cluster.
	LabelInstance = "previewd.dev/instance"
	// LabelPR is the pull request number.
	LabelPR = "previewd.dev/pr"
	// LabelRepository is RepositoryLabel(owner/name), for selection.
	LabelRepository = "previewd.dev/repository"
	// AnnotationRepository is the exact "owner/name".
	AnnotationRepository = "previewd.dev/repository"
)

var (
	// ErrTerminating: the namespace is being deleted; it cannot host a
	// preview until it is gone.
	ErrTerminating = errors.New("namespace is terminating")
	// ErrStuckTerminating: a deleted namespace did not go away within
	// Namespaces.DeleteTimeout.
	ErrStuckTerminating = errors.New("namespace stuck terminating")
)

// Owned reports whether ns carries previewd's ownership labels for instance.
func Owned(ns *corev1.Namespace, instance string) bool {
	return ownershipProblem(ns, instance) == ""
}

// ownershipProblem names the label that makes ns not owned by instance, or
// returns "" when it is owned.
func ownershipProblem(ns *corev1.Namespace, instance string) string {
	if ns == nil {
		return "no namespace"
	}
	for _, l := range []struct{ key, want string }{
		{LabelManagedBy, ManagedBy},
		{LabelInstance, instance},
	} {
		got, ok := ns.Labels[l.key]
		switch {
		case !ok:
			return fmt.Sprintf("label %s=%s is missing", l.key, l.want)
		case got != l.want:
			return fmt.Sprintf("label %s is %q, not %q", l.key, got, l.want)
		}
	}
	return ""
}

func notOwnedError(name, instance, problem string) error {
	return fmt.Errorf("namespace %s: %s (previewd instance %q): %w", name, problem, instance, model.ErrNotOwned)
}
