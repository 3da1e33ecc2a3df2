package kube

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// TestObserveCostsNoRequestPerPR: finding which wanted names exist without
// previewd's labels takes one namespace list, not a GET per open PR (5,000
// PRs filtered out by labels made 5,000 GETs a cycle).
func TestObserveCostsNoRequestPerPR(t *testing.T) {
	objs := []runtime.Object{ownedNS("pr-web-1", "test", "acme/web", "1"), foreignNS("pr-web-2"), ownedNS("pr-web-3", "other", "acme/web", "3")}
	n, cs := newNamespaces(objs...)
	rel, _ := memReleases(t)
	wanted := []string{"pr-web-2", "pr-web-3"}
	for i := 4; i < 5004; i++ {
		wanted = append(wanted, fmt.Sprintf("pr-web-%d", i))
	}
	cs.ClearActions()
	obs, err := (&Cluster{Client: cs, Namespaces: n, Releases: rel}).Observe(context.Background(), wanted)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, a := range cs.Actions() {
		counts[a.GetVerb()+" "+a.GetResource().Resource]++
	}
	if counts["get namespaces"] != 0 || counts["list namespaces"] != 2 {
		t.Errorf("requests for %d wanted names: %v; want 2 namespace lists (owned, all) and no GET", len(wanted), counts)
	}
	if !obs.Foreign["pr-web-2"] || !obs.Foreign["pr-web-3"] || obs.Foreign["pr-web-4"] || len(obs.Foreign) != 2 {
		t.Errorf("foreign = %v, want pr-web-2 (unlabelled) and pr-web-3 (another instance's)", obs.Foreign)
	}
	if _, ok := obs.Owned["pr-web-1"]; !ok || !obs.Complete {
		t.Errorf("owned = %v, complete %v", obs.Owned, obs.Complete)
	}
}
