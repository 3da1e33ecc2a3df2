// Package chartcheck lints and renders charts/previewd with the Helm 4 SDK
// (what `helm lint` and `helm template` do, without the Helm CLI). Its tests
// check the rendered objects against a real API server (server-side dry
// run) and prove that the chart's ClusterRole is the least privilege that
// previewd's own code needs for a full preview lifecycle.
package chartcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	rv1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// ChartDir is charts/previewd.
func ChartDir() string { return filepath.Join(RepoRoot(), "charts", "previewd") }

// ReadValues reads a values file; "" gives nil (the chart's defaults).
func ReadValues(path string) (map[string]any, error) {
	if path == "" {
		return nil, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vals := map[string]any{}
	if err := yaml.Unmarshal(raw, &vals); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return vals, nil
}

// Lint runs the SDK's `helm lint` (strict: warnings count) and returns the
// messages as one error.
func Lint(chartDir string, vals map[string]any) error {
	l := action.NewLint()
	l.Strict = true
	l.Namespace = "previewd"
	res := l.Run([]string{chartDir}, vals)
	var errs []error
	errs = append(errs, res.Errors...)
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			errs = append(errs, fmt.Errorf("lint: %s", m.Error()))
		}
	}
	return errors.Join(errs...)
}

// RenderOptions select what `helm template` would be given.
type RenderOptions struct {
	Release   string
	Namespace string
	// APIVersions are added to the default capabilities (--api-versions).
	APIVersions []string
	// KubeVersion is --kube-version; default the test bed's v1.37.2.
	KubeVersion string
}

// Render is `helm template`: a client-only dry-run install. It returns the
// manifest's objects in order.
func Render(ctx context.Context, chartDir string, vals map[string]any, o RenderOptions) ([]*unstructured.Unstructured, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	in := action.NewInstall(action.NewConfiguration())
	in.DryRunStrategy = action.DryRunClient
	in.Replace = true
	in.ReleaseName = o.Release
	if in.ReleaseName == "" {
		in.ReleaseName = "previewd"
	}
	in.Namespace = o.Namespace
	if in.Namespace == "" {
		in.Namespace = "previewd"
	}
	in.APIVersions = common.VersionSet(o.APIVersions)
	kv := o.KubeVersion
	if kv == "" {
		kv = "v1.37.2"
	}
	if in.KubeVersion, err = common.ParseKubeVersion(kv); err != nil {
		return nil, err
	}
	res, err := in.RunWithContext(ctx, ch, vals)
	if err != nil {
		return nil, err
	}
	rel, ok := res.(*rv1.Release)
	if !ok {
		return nil, fmt.Errorf("unexpected release type %T", res)
	}
	return SplitManifest(rel.Manifest)
}

// SplitManifest decodes a multi-document YAML manifest.
func SplitManifest(manifest string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, doc := range strings.Split("\n"+manifest, "\n---") {
		if len(bytes.TrimSpace([]byte(stripComments(doc)))) == 0 {
			continue
		}
		obj := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			return nil, fmt.Errorf("decoding manifest document: %w\n%s", err, doc)
		}
		if len(obj) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: obj})
	}
	return out, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, line := range strings.Split(doc, "\n") {
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// Find returns the first object of kind, or nil.
func Find(objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind {
			return o
		}
	}
	return nil
}
