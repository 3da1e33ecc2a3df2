package kube

import (
	"context"

	"helm.sh/helm/v4/pkg/storage/driver"
)

// ReleaseStore keeps Helm's release records outside the cluster
// (state.HelmReleases: previewd's PostgreSQL), so that previewd needs no
// access to Secrets for them.
type ReleaseStore interface {
	// Driver is Helm's storage for one namespace, bound to ctx.
	Driver(ctx context.Context, namespace string) driver.Driver
	RecordVersions
	// Purge removes every record of a namespace.
	Purge(ctx context.Context, namespace string) (int64, error)
}

// RecordVersions tells, with one request, which namespaces' records of a
// release changed (a ReleaseStore).
type RecordVersions interface {
	Versions(ctx context.Context, name string) (map[string]string, error)
}
