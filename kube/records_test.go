package kube

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/harness/testbed"
)

// TestRecordIndexVersions: one metadata list tells which namespaces hold a
// release and whether it changed: stable while nothing happens, new on an
// upgrade, gone after an uninstall; a namespace without it is absent.
func TestRecordIndexVersions(t *testing.T) {
	c := testbed.Kube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	withRel, without := testbed.Namespace(t, c), testbed.Namespace(t, c)
	r := &Releases{RESTConfig: c.RESTConfig, Log: testLogger(t)}
	x := &RecordIndex{RESTConfig: c.RESTConfig}
	req := InstallRequest{Namespace: withRel, Name: "preview", ChartPath: chartPath, Values: appValues(imageRepo, testSHA, 7)}
	if _, err := r.InstallOrUpgrade(ctx, req); err != nil {
		t.Fatal(err)
	}
	v1, err := x.Versions(ctx, "preview")
	if err != nil {
		t.Fatal(err)
	}
	if v1[withRel] == "" {
		t.Fatalf("no records listed for %s: %v", withRel, v1)
	}
	if _, ok := v1[without]; ok {
		t.Errorf("records listed for %s, which has no release", without)
	}
	if other, err := x.Versions(ctx, "other"); err != nil || other[withRel] != "" {
		t.Errorf("release %q listed under another name (%v)", "preview", err)
	}
	again, err := x.Versions(ctx, "preview")
	if err != nil || again[withRel] != v1[withRel] {
		t.Errorf("signature moved with no change: %q → %q (%v)", v1[withRel], again[withRel], err)
	}

	req.Values = appValues(imageRepo, shortSHA, 7)
	if _, err := r.InstallOrUpgrade(ctx, req); err != nil {
		t.Fatal(err)
	}
	v2, err := x.Versions(ctx, "preview")
	if err != nil || v2[withRel] == v1[withRel] {
		t.Errorf("signature unchanged by an upgrade: %q (%v)", v2[withRel], err)
	}
	// Two records now, one per page: the same answer.
	paged, err := (&RecordIndex{RESTConfig: c.RESTConfig, PageSize: 1}).Versions(ctx, "preview")
	if err != nil || paged[withRel] != v2[withRel] || strings.Count(v2[withRel], ",") != 1 {
		t.Errorf("one record per page: %q, one page: %q (%v)", paged[withRel], v2[withRel], err)
	}
	// A record changed in place (Helm updates pending-* to deployed this
	// way): the signature moves although no record was added or removed.
	secrets, err := c.Client.CoreV1().Secrets(withRel).List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=preview"})
	if err != nil || len(secrets.Items) == 0 {
		t.Fatalf("release records: %v", err)
	}
	s := secrets.Items[0]
	s.Annotations = map[string]string{"previewd.test/touched": "1"}
	if _, err := c.Client.CoreV1().Secrets(withRel).Update(ctx, &s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v, err := x.Versions(ctx, "preview"); err != nil || v[withRel] == v2[withRel] {
		t.Errorf("signature unchanged by an in-place update: %q (%v)", v[withRel], err)
	}

	if err := r.Uninstall(ctx, withRel, "preview"); err != nil {
		t.Fatal(err)
	}
	v3, err := x.Versions(ctx, "preview")
	if err != nil || v3[withRel] != "" {
		t.Errorf("records still listed after uninstall: %q (%v)", v3[withRel], err)
	}
}
