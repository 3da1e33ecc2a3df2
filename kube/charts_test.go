package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	common "helm.sh/helm/v4/pkg/chart/common"

	"github.com/previewd/previewd/internal/harness/ociregistry"
	"github.com/previewd/previewd/reconcile/model"
)

// repoFiles serves directories of commits and counts the reads.
type repoFiles struct {
	mu    sync.Mutex
	trees map[string]map[string][]byte // sha → files of the chart dir
	reads map[string]int
	fail  error
}

func (r *repoFiles) RepoDir(_ context.Context, repo, sha, dir string) (map[string][]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reads == nil {
		r.reads = map[string]int{}
	}
	r.reads[sha]++
	if r.fail != nil {
		return nil, r.fail
	}
	t, ok := r.trees[sha]
	if !ok {
		return nil, fmt.Errorf("no commit %s", sha)
	}
	return maps.Clone(t), nil
}

// previewApp is the files of charts/preview-app with changes.
func previewApp(t *testing.T, edit map[string]string) map[string][]byte {
	t.Helper()
	root := filepath.Join("..", "charts", "preview-app")
	files := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range edit {
		if v == "" {
			delete(files, k)
		} else {
			files[k] = []byte(v)
		}
	}
	return files
}

// TestChartsFromTheRepository: a repo: chart is read at the SHA deployed,
// once per SHA (retries reuse it), with its .helmignore applied; a chart
// that cannot be installed as it is is a ChartError saying why; a failed
// read is not remembered.
func TestChartsFromTheRepository(t *testing.T) {
	ctx := context.Background()
	v2 := previewApp(t, map[string]string{
		"Chart.yaml":        "apiVersion: v2\nname: preview-app\nversion: 0.2.0\n",
		".helmignore":       "*.md\n",
		"NOTES.md":          "ignored",
		"templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: added-in-the-pr\n",
	})
	rf := &repoFiles{trees: map[string]map[string][]byte{
		"sha1": previewApp(t, nil),
		"sha2": v2,
		"nodeps": previewApp(t, map[string]string{
			"Chart.yaml": "apiVersion: v2\nname: preview-app\nversion: 0.3.0\ndependencies:\n  - name: redis\n    version: 20.0.0\n    repository: oci://registry-1.docker.io/bitnamicharts\n",
		}),
		"nochart": {"README.md": []byte("no chart here")},
	}}
	c := &Charts{Repos: rf}
	src := model.ChartSource{Kind: model.ChartRepo, Location: "deploy/chart"}
	ref := func(sha string) model.ChartRef { return model.ChartRef{Source: src, Repo: "acme/web", SHA: sha} }

	for range 3 {
		ch, err := c.Load(ctx, ref("sha1"))
		if err != nil || ch.Metadata.Version != "0.1.0" {
			t.Fatalf("sha1: %v %v", ch, err)
		}
	}
	ch, err := c.Load(ctx, ref("sha2"))
	if err != nil {
		t.Fatal(err)
	}
	if ch.Metadata.Version != "0.2.0" || !hasTemplate(ch.Templates, "templates/cm.yaml") {
		t.Errorf("sha2 chart = %s with %d templates, want 0.2.0 with cm.yaml", ch.Metadata.Version, len(ch.Templates))
	}
	for _, f := range ch.Files {
		if f.Name == "NOTES.md" {
			t.Errorf(".helmignore not applied: %s loaded", f.Name)
		}
	}
	if rf.reads["sha1"] != 1 || rf.reads["sha2"] != 1 || c.Fetches(model.ChartRepo) != 2 {
		t.Errorf("reads = %v, fetches %d: want one per SHA", rf.reads, c.Fetches(model.ChartRepo))
	}

	_, err = c.Load(ctx, ref("nodeps"))
	var ce *ChartError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "missing in charts/ directory: redis") || !strings.Contains(err.Error(), "helm dependency build") {
		t.Errorf("unvendored dependency: %v", err)
	}
	if _, err = c.Load(ctx, ref("nochart")); !errors.As(err, &ce) || !strings.Contains(err.Error(), "no Chart.yaml in deploy/chart") {
		t.Errorf("no chart: %v", err)
	}

	rf.fail = errors.New("GitHub unavailable")
	if _, err := c.Load(ctx, ref("sha3")); err == nil || errors.As(err, &ce) {
		t.Errorf("failed read: %v, want a plain error (not the chart's fault)", err)
	}
	rf.fail = nil
	rf.trees["sha3"] = previewApp(t, nil)
	if _, err := c.Load(ctx, ref("sha3")); err != nil || rf.reads["sha3"] != 2 {
		t.Errorf("after a failed read the next load reads again: %v, reads %d", err, rf.reads["sha3"])
	}

	// Each load is the caller's own: Helm changes charts it installs.
	a, _ := c.Load(ctx, ref("sha1"))
	a.Templates[0].Data[0] = 'X'
	a.Values["mutated"] = true
	b, _ := c.Load(ctx, ref("sha1"))
	if b.Templates[0].Data[0] == 'X' || b.Values["mutated"] != nil {
		t.Error("a load shares data with an earlier one")
	}
}

func hasTemplate(ts []*common.File, name string) bool {
	for _, f := range ts {
		if f.Name == name {
			return true
		}
	}
	return false
}

// TestChartsFromAnOCIRegistry pulls from a real registry with basic auth:
// once per version; a wrong password is refused without printing it.
func TestChartsFromAnOCIRegistry(t *testing.T) {
	ctx := context.Background()
	reg := ociregistry.Start(t, "robot", "s3cr3t-pa55")
	loc := strings.TrimPrefix(reg.Push(filepath.Join("..", "charts", "preview-app"), "charts/preview-app"), "oci://")
	src := model.ChartSource{Kind: model.ChartOCI, Location: loc, Version: "0.1.0"}
	ref := model.ChartRef{Source: src, Repo: "acme/web", SHA: "sha1"}

	c := &Charts{Registry: map[string]RegistryAccess{
		"acme/web":   {Username: "robot", Password: "s3cr3t-pa55", PlainHTTP: true},
		"acme/wrong": {Username: "robot", Password: "not-the-pa55word", PlainHTTP: true},
	}}
	for range 2 {
		ch, err := c.Load(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Metadata.Name != "preview-app" || ch.Metadata.Version != "0.1.0" || len(ch.Templates) == 0 {
			t.Errorf("pulled %s %s with %d templates", ch.Metadata.Name, ch.Metadata.Version, len(ch.Templates))
		}
	}
	if n := c.Fetches(model.ChartOCI); n != 1 {
		t.Errorf("pulls = %d, want 1", n)
	}

	wrong := ref
	wrong.Repo = "acme/wrong"
	_, err := c.Load(ctx, wrong)
	if err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
		t.Errorf("wrong password: %v, want unauthorized", err)
	}
	if err != nil && strings.Contains(err.Error(), "not-the-pa55word") {
		t.Errorf("the password is in the error: %v", err)
	}
	missing := ref
	missing.Source.Version = "9.9.9"
	if _, err := c.Load(ctx, missing); err == nil || !strings.Contains(err.Error(), "9.9.9") {
		t.Errorf("missing version: %v", err)
	}
	if s := fmt.Sprintf("%v %+v %#v", c.Registry, c.Registry["acme/web"], c.Registry["acme/web"]); strings.Contains(s, "s3cr3t") {
		t.Errorf("registry access prints its password: %s", s)
	}
}
