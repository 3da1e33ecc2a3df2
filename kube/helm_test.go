package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
	"go.uber.org/goleak"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	kubefake "helm.sh/helm/v4/pkg/kube/fake"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
)

const chartPath = "../charts/preview-app"

// memReleases is a Releases whose operations share one in-memory Helm
// storage and print instead of talking to a cluster.
func memReleases(t *testing.T) (*Releases, *storage.Storage) {
	t.Helper()
	mem := driver.NewMemory()
	mem.SetLogger(slog.DiscardHandler)
	mem.SetNamespace("pr-web-12")
	store := storage.Init(mem)
	r := &Releases{MaxHistory: 3}
	r.newConfig = func(context.Context, string) (*action.Configuration, error) {
		cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
		cfg.Releases = storage.Init(mem)
		cfg.Releases.MaxHistory = r.maxHistory()
		cfg.KubeClient = &kubefake.PrintingKubeClient{Out: io.Discard}
		caps := common.DefaultCapabilities.Copy()
		caps.KubeVersion = common.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}
		cfg.Capabilities = caps
		return cfg, nil
	}
	return r, store
}

func previewValues(tag, branch string) map[string]any {
	return map[string]any{
		"image":       map[string]any{"repository": "registry.example/acme/web", "tag": tag},
		"pullRequest": map[string]any{"number": 12, "branch": branch},
	}
}

func req(vals map[string]any) InstallRequest {
	return InstallRequest{Namespace: "pr-web-12", Name: "preview", ChartPath: chartPath, Values: vals}
}

func TestReleasesGetMissing(t *testing.T) {
	r, _ := memReleases(t)
	got, err := r.Get(context.Background(), "pr-web-12", "preview")
	if err != nil || got.Exists || got.Locked() {
		t.Fatalf("Get = %+v, %v", got, err)
	}
}

func TestReleasesInstallThenUpgrade(t *testing.T) {
	// Helm 4.3.1's Upgrade leaks a goroutine (and may mark the release
	// failed) when the context it was given ends after success; we never
	// give it one that ends.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	r, _ := memReleases(t)
	ctx := context.Background()
	vals := previewValues("1234567", "a,b=c")
	rel, err := r.InstallOrUpgrade(ctx, req(vals))
	if err != nil {
		t.Fatal(err)
	}
	if !rel.Exists || rel.Revision != 1 || rel.Status != "deployed" || rel.ChartName != "preview-app" || rel.ChartVersion != "0.1.0" {
		t.Errorf("install = %+v", rel)
	}
	// The caller's map is not shared with Helm.
	vals["image"].(map[string]any)["tag"] = "mutated"

	got, err := r.Get(ctx, "pr-web-12", "preview")
	if err != nil {
		t.Fatal(err)
	}
	img := got.Values["image"].(map[string]any)
	if tag, ok := img["tag"].(string); !ok || tag != "1234567" {
		t.Errorf("tag = %#v, want the string 1234567", img["tag"])
	}
	if b := got.Values["pullRequest"].(map[string]any)["branch"]; b != "a,b=c" {
		t.Errorf("branch = %#v", b)
	}

	// Upgrade resets values: a key left out is gone.
	up := previewValues("89abcdef", "main")
	delete(up, "pullRequest")
	rel, err = r.InstallOrUpgrade(ctx, req(up))
	if err != nil {
		t.Fatal(err)
	}
	if rel.Revision != 2 || rel.Status != "deployed" {
		t.Errorf("upgrade = %+v", rel)
	}
	got, _ = r.Get(ctx, "pr-web-12", "preview")
	if _, ok := got.Values["pullRequest"]; ok || got.Values["image"].(map[string]any)["tag"] != "89abcdef" {
		t.Errorf("values not reset: %#v", got.Values)
	}
}

func TestReleasesMaxHistory(t *testing.T) {
	r, store := memReleases(t)
	for i := range 7 {
		if _, err := r.InstallOrUpgrade(context.Background(), req(previewValues("t"+string(rune('a'+i)), "main"))); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := store.History("preview")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) > 3 {
		t.Errorf("%d revisions kept, MaxHistory is 3", len(hist))
	}
	got, _ := r.Get(context.Background(), "pr-web-12", "preview")
	if got.Revision != 7 {
		t.Errorf("revision %d, want 7", got.Revision)
	}
}

// putRelease stores a revision directly, as a dead process would have
// left it.
func putRelease(t *testing.T, store *storage.Storage, version int, status rcommon.Status) {
	t.Helper()
	ch, err := loader.Load(chartPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(-time.Hour)
	rel := &release.Release{
		Name: "preview", Namespace: "pr-web-12", Version: version, Chart: ch,
		Config: previewValues("old", "main"),
		Info:   &release.Info{Status: status, FirstDeployed: now, LastDeployed: now, Description: "died"},
	}
	if err := store.Create(rel); err != nil {
		t.Fatal(err)
	}
}

func TestReleasesLockedAndUnlock(t *testing.T) {
	for _, status := range []rcommon.Status{rcommon.StatusPendingInstall, rcommon.StatusPendingUpgrade, rcommon.StatusPendingRollback, rcommon.StatusUninstalling} {
		t.Run(string(status), func(t *testing.T) {
			r, store := memReleases(t)
			ctx := context.Background()
			putRelease(t, store, 1, rcommon.StatusSuperseded)
			putRelease(t, store, 2, status)

			rel, err := r.InstallOrUpgrade(ctx, req(previewValues("new", "main")))
			if !errors.Is(err, model.ErrLocked) {
				t.Fatalf("InstallOrUpgrade = %v, want model.ErrLocked", err)
			}
			if !rel.Locked() || rel.Status != string(status) || rel.Revision != 2 || time.Since(rel.Updated) < time.Hour {
				t.Errorf("locked release = %+v", rel)
			}
			if err := r.Unlock(ctx, "pr-web-12", "preview"); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.Get(ctx, "pr-web-12", "preview"); got.Exists {
				t.Fatalf("after Unlock: %+v", got)
			}
			rel, err = r.InstallOrUpgrade(ctx, req(previewValues("new", "main")))
			if err != nil || rel.Revision != 1 || rel.Status != "deployed" {
				t.Fatalf("after Unlock: %+v, %v", rel, err)
			}
		})
	}
}

func TestReleasesUnlockLeavesHealthyAlone(t *testing.T) {
	r, _ := memReleases(t)
	ctx := context.Background()
	if err := r.Unlock(ctx, "pr-web-12", "preview"); err != nil {
		t.Errorf("Unlock of nothing: %v", err)
	}
	if _, err := r.InstallOrUpgrade(ctx, req(previewValues("a", "main"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Unlock(ctx, "pr-web-12", "preview"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, "pr-web-12", "preview"); got.Status != "deployed" {
		t.Errorf("Unlock touched a deployed release: %+v", got)
	}
}

func TestReleasesUpgradeFromFailedAndUninstalled(t *testing.T) {
	r, store := memReleases(t)
	ctx := context.Background()
	putRelease(t, store, 1, rcommon.StatusFailed)
	rel, err := r.InstallOrUpgrade(ctx, req(previewValues("b", "main")))
	if err != nil || rel.Revision != 2 || rel.Status != "deployed" {
		t.Fatalf("upgrade from failed: %+v, %v", rel, err)
	}

	r2, store2 := memReleases(t)
	putRelease(t, store2, 1, rcommon.StatusUninstalled)
	rel, err = r2.InstallOrUpgrade(ctx, req(previewValues("b", "main")))
	if err != nil || rel.Revision != 2 || rel.Status != "deployed" {
		t.Fatalf("install over uninstalled: %+v, %v", rel, err)
	}
}

func TestReleasesUninstall(t *testing.T) {
	r, _ := memReleases(t)
	ctx := context.Background()
	if err := r.Uninstall(ctx, "pr-web-12", "preview"); err != nil {
		t.Errorf("Uninstall of nothing: %v", err)
	}
	if _, err := r.InstallOrUpgrade(ctx, req(previewValues("a", "main"))); err != nil {
		t.Fatal(err)
	}
	if err := r.Uninstall(ctx, "pr-web-12", "preview"); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Get(ctx, "pr-web-12", "preview"); got.Exists {
		t.Errorf("after Uninstall: %+v", got)
	}
}

func TestReleasesBadRequest(t *testing.T) {
	r, _ := memReleases(t)
	if _, err := r.InstallOrUpgrade(context.Background(), InstallRequest{Name: "preview"}); err == nil {
		t.Error("missing namespace/chart accepted")
	}
	bad := req(nil)
	bad.ChartPath = "/nonexistent/chart"
	if _, err := r.InstallOrUpgrade(context.Background(), bad); err == nil {
		t.Error("missing chart accepted")
	}
	if _, err := (&Releases{}).Get(context.Background(), "ns", "preview"); err == nil {
		t.Error("nil RESTConfig accepted")
	}
}

func TestCopyValues(t *testing.T) {
	in := map[string]any{"a": map[string]any{"b": []any{map[string]any{"c": 1}}}}
	out := copyValues(in)
	out["a"].(map[string]any)["b"].([]any)[0].(map[string]any)["c"] = 2
	if in["a"].(map[string]any)["b"].([]any)[0].(map[string]any)["c"] != 1 {
		t.Error("copyValues shares nested values")
	}
	if copyValues(nil) == nil {
		t.Error("nil values should become an empty map")
	}
}
