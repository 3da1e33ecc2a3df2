package github

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/previewd/previewd/github/githubfake"
)

// TestRepoDir reads one directory of a repository at a commit from its
// tarball: one charged API request, the download from the redirect's
// address, only that directory's files.
func TestRepoDir(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	ctx := testCtx(t)
	sha := strings.Repeat("ab", 20)
	e.f.SetFiles(testRepo, sha, map[string][]byte{
		"README.md":                          []byte("app"),
		"deploy/chart-old/Chart.yaml":        []byte("old"),
		"deploy/chart/Chart.yaml":            []byte("apiVersion: v2\nname: app\nversion: 0.2.0\n"),
		"deploy/chart/templates/app.yaml":    []byte("kind: ConfigMap"),
		"deploy/chart/charts/dep/Chart.yaml": []byte("dep"),
		"src/main.go":                        []byte("package main"),
	})
	e.f.ResetCounters()
	got, err := e.c.RepoDir(ctx, testRepo, sha, "deploy/chart")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{
		"Chart.yaml":            []byte("apiVersion: v2\nname: app\nversion: 0.2.0\n"),
		"templates/app.yaml":    []byte("kind: ConfigMap"),
		"charts/dep/Chart.yaml": []byte("dep"),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("files = %q, want %q", keys(got), keys(want))
	}
	c := e.f.Counters()
	if n := c.Route(githubfake.RouteGetTarball, http.StatusFound); n != 1 || c.Charged != 1 {
		t.Errorf("tarball requests answered 302 = %d, charged %d: want 1 and 1", n, c.Charged)
	}
	if n := e.f.Downloads(testRepo, sha); n != 1 {
		t.Errorf("downloads = %d, want 1", n)
	}

	root, err := e.c.RepoDir(ctx, testRepo, sha, ".")
	if err != nil || len(root) != 6 {
		t.Errorf("the repository's root: %d files, %v", len(root), err)
	}

	if _, err := e.c.RepoDir(ctx, testRepo, sha, "charts/nope"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "no directory charts/nope") {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := e.c.RepoDir(ctx, testRepo, strings.Repeat("cd", 20), "deploy/chart"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown commit: %v", err)
	}
	e.f.AddFault(githubfake.Fault{Route: githubfake.RouteGetTarball, Status: http.StatusBadGateway, Times: 1})
	if _, err := e.c.RepoDir(ctx, testRepo, sha, "deploy/chart"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("502: %v, want ErrUnavailable", err)
	}
	e.f.AddFault(githubfake.Fault{Route: githubfake.RouteGetTarball, Status: http.StatusTooManyRequests, Times: 1})
	if _, err := e.c.RepoDir(ctx, testRepo, sha, "deploy/chart"); !errors.Is(err, ErrRateLimited) {
		t.Errorf("429: %v, want ErrRateLimited", err)
	}
	// The rate limit now holds every request, this one included.
	before := e.f.Counters().Requests
	if _, err := e.c.RepoDir(ctx, testRepo, sha, "deploy/chart"); !errors.Is(err, ErrRateLimited) || e.f.Counters().Requests != before {
		t.Errorf("held: %v, requests %d → %d", err, before, e.f.Counters().Requests)
	}
	if strings.Contains(e.logs.String(), "token=") {
		t.Errorf("an archive address was logged:\n%s", e.logs.String())
	}
}

// TestRepoDirBounds: a directory larger than MaxDirBytes is refused with
// ErrTooLarge, not read into memory.
func TestRepoDirBounds(t *testing.T) {
	e := newEnv(t, githubfake.Options{}, nil)
	sha := strings.Repeat("ef", 20)
	e.f.SetFiles(testRepo, sha, map[string][]byte{
		"chart/Chart.yaml":   []byte("x"),
		"chart/big/blob.bin": make([]byte, MaxDirBytes+1),
	})
	_, err := e.c.RepoDir(testCtx(t), testRepo, sha, "chart")
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "larger than 20 MiB") {
		t.Errorf("err = %v, want ErrTooLarge naming the bound", err)
	}
}
