package wire_test

import (
	"context"
	"reflect"
	"strings"
	"sync"
	"testing"

	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/state"
)

// recordReads counts the reads of each namespace's Helm release records
// (one storage driver per read).
type recordReads struct {
	kube.ReleaseStore
	mu sync.Mutex
	n  map[string]int
}

func (s *recordReads) Driver(ctx context.Context, ns string) driver.Driver {
	s.mu.Lock()
	s.n[ns]++
	s.mu.Unlock()
	return s.ReleaseStore.Driver(ctx, ns)
}

func (s *recordReads) take() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.n
	s.n = map[string]int{}
	return out
}

// releaseStore opens the test's PostgreSQL, where the daemon keeps its
// release records.
func releaseStore(t *testing.T, e *e2e.Env) kube.ReleaseStore {
	t.Helper()
	st, err := state.Open(context.Background(), e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st.HelmReleases()
}

// TestObserveReadsChangedReleasesOnly: a cycle reads (and decodes) a
// preview's Helm release only when its records changed since the last
// cycle; what it reports is the same as a full read.
func TestObserveReadsChangedReleasesOnly(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n1 := e.Open("One", "one", e2e.SHA("o1"))
	n2 := e.Open("Two", "two", e2e.SHA("o2"))
	e.MustRunOnce(d)
	ctx := context.Background()

	store := releaseStore(t, e)
	reads := &recordReads{ReleaseStore: store, n: map[string]int{}}
	cl := &kube.Cluster{Client: e.Kube.Client, Namespaces: &kube.Namespaces{Client: e.Kube.Client, Instance: d.Config.Instance},
		Releases: &kube.Releases{RESTConfig: e.Kube.RESTConfig, Store: reads}, Records: store}
	full := &kube.Cluster{Client: e.Kube.Client, Namespaces: cl.Namespaces, Releases: &kube.Releases{RESTConfig: e.Kube.RESTConfig, Store: store}}

	first, err := cl.Observe(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := reads.take(); r[e.NS(n1)] == 0 || r[e.NS(n2)] == 0 {
		t.Fatalf("first observation did not read both releases: %v", r)
	}
	second, err := cl.Observe(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := reads.take(); len(r) != 0 {
		t.Errorf("unchanged releases read again: %v", r)
	}
	want, err := full.Observe(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{n1, n2} {
		ns := e.NS(n)
		if !second.Releases[ns].Exists || !reflect.DeepEqual(second.Releases[ns], first.Releases[ns]) || !reflect.DeepEqual(second.Releases[ns], want.Releases[ns]) {
			t.Errorf("%s: first %+v, second %+v, full read %+v", ns, first.Releases[ns], second.Releases[ns], want.Releases[ns])
		}
	}

	// A push: the daemon upgrades n1; the next observation reads n1 only
	// and reports the new SHA.
	sha := e2e.SHA("o1-pushed")
	if err := e.GH.Push(e.Repo, n1, sha); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	third, err := cl.Observe(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := reads.take()
	if r[e.NS(n1)] == 0 || r[e.NS(n2)] != 0 {
		t.Errorf("after upgrading %s only: record reads %v", e.NS(n1), r)
	}
	if got := third.Releases[e.NS(n1)]; got.SHA != sha || got.Status != "deployed" {
		t.Errorf("after the push: %s release %+v, want SHA %s deployed", e.NS(n1), got, sha[:7])
	}
	want, err = full.Observe(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{n1, n2} {
		if ns := e.NS(n); !reflect.DeepEqual(third.Releases[ns], want.Releases[ns]) {
			t.Errorf("%s: cached %+v, full read %+v", ns, third.Releases[ns], want.Releases[ns])
		}
	}

	// Closed: the namespace goes; the cache forgets it.
	if err := e.GH.ClosePR(e.Repo, n2); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	fourth, err := cl.Observe(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fourth.Owned[e.NS(n2)]; ok {
		t.Errorf("%s still observed after the PR closed", e.NS(n2))
	}
	if _, ok := fourth.Releases[e.NS(n2)]; ok {
		t.Errorf("release of closed %s still reported: %+v", e.NS(n2), fourth.Releases[e.NS(n2)])
	}
}

// TestObserveNamespaceCreatedAfterTheList: a deploy still running from an
// earlier cycle creates its namespace between this cycle's list of owned
// namespaces and the check of the names it wants. That namespace is ours,
// not foreign (it used to block the PR: "not managed by previewd"); a
// namespace without previewd's labels still is foreign.
func TestObserveNamespaceCreatedAfterTheList(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	sha := e2e.SHA("late")
	n := e.Open("Late", "late", sha)
	e.MustRunOnce(d)
	foreign := testbed.Namespace(t, e.Kube)

	// The list ran before the namespace existed: an empty one.
	store := releaseStore(t, e)
	cl := &kube.Cluster{Client: e.Kube.Client, Namespaces: &kube.Namespaces{Client: fake.NewClientset(), Instance: d.Config.Instance},
		Releases: &kube.Releases{RESTConfig: e.Kube.RESTConfig, Store: store}, Records: store}
	obs, err := cl.Observe(context.Background(), []string{e.NS(n), foreign})
	if err != nil {
		t.Fatal(err)
	}
	if obs.Foreign[e.NS(n)] {
		t.Errorf("%s, created by this instance after the list, reported foreign", e.NS(n))
	}
	if o, ok := obs.Owned[e.NS(n)]; !ok || o.Number != n || !strings.EqualFold(o.Repo, e.Repo) {
		t.Errorf("%s not reported as this PR's: %+v", e.NS(n), o)
	}
	if rel := obs.Releases[e.NS(n)]; !rel.Exists || rel.SHA != sha {
		t.Errorf("release in %s = %+v, want %s", e.NS(n), rel, sha[:7])
	}
	if !obs.Foreign[foreign] {
		t.Errorf("%s, without previewd's labels, not reported foreign", foreign)
	}
}
