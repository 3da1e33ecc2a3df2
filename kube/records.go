package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"helm.sh/helm/v4/pkg/storage/driver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
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
// release changed (RecordIndex, or a ReleaseStore).
type RecordVersions interface {
	Versions(ctx context.Context, name string) (map[string]string, error)
}

var secretsResource = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// RecordIndex answers "did release name change in namespace X since I last
// read it?" for every namespace with one request: it lists only the
// metadata of the Secrets that hold the release's revisions (Helm's storage
// labels them owner=helm, name=<release>), across all namespaces.
type RecordIndex struct {
	RESTConfig *rest.Config
	// PageSize is the list's page size; zero means 500.
	PageSize int64

	once sync.Once
	meta metadata.Interface
	err  error
}

// Versions returns, per namespace that holds at least one revision record
// of release name, a signature of those records (their names and
// resourceVersions): it changes with every new revision, status change
// (pending → deployed) and uninstall. A namespace missing from the map
// holds no record of the release. No Secret data is transferred.
func (x *RecordIndex) Versions(ctx context.Context, name string) (map[string]string, error) {
	x.once.Do(func() {
		if x.RESTConfig == nil {
			x.err = fmt.Errorf("kube: RecordIndex.RESTConfig is nil")
			return
		}
		x.meta, x.err = metadata.NewForConfig(x.RESTConfig)
	})
	if x.err != nil {
		return nil, x.err
	}
	per := map[string][]string{}
	// A consistent read (no ResourceVersion "0" from the watch cache): the
	// caller relies on a record written before this list being in it.
	limit := x.PageSize
	if limit <= 0 {
		limit = 500
	}
	opts := metav1.ListOptions{LabelSelector: "owner=helm,name=" + name, Limit: limit}
	for {
		list, err := x.meta.Resource(secretsResource).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing the release records of %q: %w", name, err)
		}
		for _, s := range list.Items {
			per[s.Namespace] = append(per[s.Namespace], s.Name+"@"+s.ResourceVersion)
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	out := make(map[string]string, len(per))
	for ns, recs := range per {
		sort.Strings(recs)
		out[ns] = strings.Join(recs, ",")
	}
	return out, nil
}
