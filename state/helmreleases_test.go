package state

import (
	"errors"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/release/common"
	rspb "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
)

func helmRelease(name string, version int, status common.Status) *rspb.Release {
	return &rspb.Release{Name: name, Namespace: "pr-web-1", Version: version,
		Info:   &rspb.Info{Status: status, LastDeployed: time.Date(2026, 12, 1, 0, 0, version, 0, time.UTC)},
		Config: map[string]any{"image": map[string]any{"tag": "abc"}}, Labels: map[string]string{"team": "web"}}
}

// TestHelmReleasesAsHelmStorage: Helm's own storage layer (history,
// deployed lookup, max history, uninstall) runs on the PostgreSQL records;
// Versions changes with every write and Purge empties a namespace.
func TestHelmReleasesAsHelmStorage(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	h := s.HelmReleases()
	st := storage.Init(h.Driver(ctx, "pr-web-1"))
	st.MaxHistory = 2
	other := storage.Init(h.Driver(ctx, "pr-web-2"))
	if err := other.Create(helmRelease("preview", 1, common.StatusDeployed)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Deployed("preview"); err == nil {
		t.Fatal("Deployed found another namespace's release")
	}
	if err := st.Create(helmRelease("preview", 1, common.StatusPendingInstall)); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(helmRelease("preview", 1, common.StatusPendingInstall)); !errors.Is(err, driver.ErrReleaseExists) {
		t.Errorf("second Create of v1: %v, want ErrReleaseExists", err)
	}
	v1, _ := h.Versions(ctx, "preview")
	r1 := helmRelease("preview", 1, common.StatusDeployed)
	if err := st.Update(r1); err != nil {
		t.Fatal(err)
	}
	v2, _ := h.Versions(ctx, "preview")
	if v1["pr-web-1"] == v2["pr-web-1"] || v1["pr-web-2"] != v2["pr-web-2"] || len(v2) != 2 {
		t.Errorf("Versions did not follow the update: %v → %v", v1, v2)
	}
	got, err := st.Deployed("preview")
	if err != nil {
		t.Fatal(err)
	}
	rel := got.(*rspb.Release)
	if rel.Version != 1 || rel.Config["image"].(map[string]any)["tag"] != "abc" || rel.Labels["team"] != "web" {
		t.Errorf("read back: version %d config %v labels %v", rel.Version, rel.Config, rel.Labels)
	}
	// Get returns the release's own labels, without Helm's (as the
	// Secret driver does).
	if got, err := st.Get("preview", 1); err != nil || got.(*rspb.Release).Labels["owner"] != "" || got.(*rspb.Release).Labels["team"] != "web" {
		t.Errorf("Get: %v labels %v", err, got)
	}
	for v := 2; v <= 4; v++ {
		prev, _ := st.Get("preview", v-1)
		p := prev.(*rspb.Release)
		p.Info.Status = common.StatusSuperseded
		if err := st.Update(p); err != nil {
			t.Fatal(err)
		}
		if err := st.Create(helmRelease("preview", v, common.StatusDeployed)); err != nil {
			t.Fatal(err)
		}
	}
	hist, err := st.History("preview")
	if err != nil || len(hist) != 2 {
		t.Errorf("history after 4 revisions with MaxHistory 2: %d records, %v", len(hist), err)
	}
	if _, err := st.Get("preview", 1); !errors.Is(err, driver.ErrReleaseNotFound) {
		t.Errorf("revision 1 kept past MaxHistory: %v", err)
	}
	for _, r := range hist {
		if _, err := st.Delete("preview", r.(*rspb.Release).Version); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := h.Versions(ctx, "preview"); v["pr-web-1"] != "" {
		t.Errorf("records left after deleting every revision: %v", v)
	}
	if n, err := h.Purge(ctx, "pr-web-2"); err != nil || n != 1 {
		t.Errorf("Purge = %d, %v; want 1", n, err)
	}
	if v, _ := h.Versions(ctx, "preview"); len(v) != 0 {
		t.Errorf("Versions after Purge: %v", v)
	}
}
