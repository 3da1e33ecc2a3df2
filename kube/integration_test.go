package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/reconcile/model"
)

func TestMain(m *testing.M) {
	UseFieldManager()
	testbed.Main(m)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// uniqueNumber is a PR number no other run against the same cluster uses.
func uniqueNumber() int { return int(time.Now().UnixNano()/1000) % 1_000_000_000 }

const (
	testSHA   = "0123456789abcdef0123456789abcdef01234567"
	shortSHA  = "1234567" // digits only: --set would turn it into a number
	branch    = "a,b=c"   // --set would split it
	imageRepo = "registry.example/acme/web"
)

func appValues(repo, tag string, number int) map[string]any {
	return map[string]any{
		"image":                   map[string]any{"repository": repo, "tag": tag},
		"pullRequest":             map[string]any{"number": number, "branch": branch},
		"host":                    fmt.Sprintf("pr-%d.preview.example", number),
		"environment":             "preview",
		"replicaCount":            1,
		"progressDeadlineSeconds": 60,
	}
}

func getDeployment(t *testing.T, c *testbed.Cluster, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := c.Client.AppsV1().Deployments(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading deployment %s/%s: %v", ns, name, err)
	}
	return d
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return "<unset>"
}

// TestSmokeTestBed drives a preview's whole life on the local control
// plane: namespace, install, ready, upgrade, two failing images, delete.
func TestSmokeTestBed(t *testing.T) {
	c := testbed.Kube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	log := testLogger(t)
	number := uniqueNumber()
	namespaces := &Namespaces{Client: c.Client, Instance: "itest-smoke", Log: log}
	releases := &Releases{RESTConfig: c.RESTConfig, Log: log}
	nsName := NamespaceName("acme/web", number)
	rel := ReleaseName
	selector := "app.kubernetes.io/instance=" + rel

	// Namespace.
	start := time.Now()
	if err := namespaces.Ensure(ctx, nsName, "acme/web", number); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = namespaces.Delete(context.Background(), nsName) })
	t.Logf("timing: ensure namespace %s: %s", nsName, time.Since(start).Round(time.Millisecond))

	// Install with a 40-hex SHA.
	start = time.Now()
	got, err := releases.InstallOrUpgrade(ctx, InstallRequest{Namespace: nsName, Name: rel, ChartPath: chartPath,
		Values: appValues(imageRepo, testSHA, number), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: helm install: %s (revision %d, %s)", time.Since(start).Round(time.Millisecond), got.Revision, got.Status)
	if got.Revision != 1 || got.Status != "deployed" {
		t.Errorf("install: %+v", got)
	}
	start = time.Now()
	if err := WaitReady(ctx, c.Client, nsName, selector, time.Minute); err != nil {
		t.Fatalf("WaitReady after install: %v", err)
	}
	t.Logf("timing: ready after install: %s", time.Since(start).Round(time.Millisecond))

	d := getDeployment(t, c, nsName, rel)
	ctr := d.Spec.Template.Spec.Containers[0]
	if want := imageRepo + ":" + testSHA; ctr.Image != want {
		t.Errorf("image = %q, want %q", ctr.Image, want)
	}
	if a := d.Spec.Template.Annotations["previewd.dev/branch"]; a != branch {
		t.Errorf("branch annotation = %q, want %q", a, branch)
	}
	if e := envValue(ctr, "PR_BRANCH"); e != branch {
		t.Errorf("PR_BRANCH = %q, want %q", e, branch)
	}
	if e := envValue(ctr, "PR_NUMBER"); e != fmt.Sprint(number) {
		t.Errorf("PR_NUMBER = %q, want %d", e, number)
	}

	// Upgrade to a digits-only short SHA.
	start = time.Now()
	got, err = releases.InstallOrUpgrade(ctx, InstallRequest{Namespace: nsName, Name: rel, ChartPath: chartPath,
		Values: appValues(imageRepo, shortSHA, number), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: helm upgrade: %s (revision %d)", time.Since(start).Round(time.Millisecond), got.Revision)
	if got.Revision != 2 || got.Status != "deployed" {
		t.Errorf("upgrade: %+v", got)
	}
	start = time.Now()
	if err := WaitReady(ctx, c.Client, nsName, selector, time.Minute); err != nil {
		t.Fatalf("WaitReady after upgrade: %v", err)
	}
	t.Logf("timing: ready after upgrade (rollout complete): %s", time.Since(start).Round(time.Millisecond))
	d = getDeployment(t, c, nsName, rel)
	if want := imageRepo + ":" + shortSHA; d.Spec.Template.Spec.Containers[0].Image != want {
		t.Errorf("image after upgrade = %q, want %q", d.Spec.Template.Spec.Containers[0].Image, want)
	}
	if d.Status.ObservedGeneration < d.Generation || d.Status.UpdatedReplicas != 1 || d.Status.Replicas != 1 || d.Status.AvailableReplicas != 1 {
		t.Errorf("rollout not complete: %+v", d.Status)
	}
	if a := d.Spec.Template.Labels["app.kubernetes.io/version"]; a != shortSHA {
		t.Errorf("version label = %q, want %q", a, shortSHA)
	}
	stored, err := releases.Get(ctx, nsName, rel)
	if err != nil {
		t.Fatal(err)
	}
	if tag, ok := stored.Values["image"].(map[string]any)["tag"].(string); !ok || tag != shortSHA {
		t.Errorf("stored tag = %#v, want the string %q", stored.Values["image"].(map[string]any)["tag"], shortSHA)
	}

	// Fresh installs whose images never run fail fast.
	for _, tc := range []struct{ release, repo, reason string }{
		{"pull", testbed.FailImagePull, ReasonImagePullBackOff},
		{"crash", testbed.FailCrashLoop, ReasonCrashLoopBackOff},
	} {
		start = time.Now()
		if _, err := releases.InstallOrUpgrade(ctx, InstallRequest{Namespace: nsName, Name: tc.release, ChartPath: chartPath,
			Values: appValues(tc.repo, testSHA, number), Timeout: time.Minute}); err != nil {
			t.Fatal(err)
		}
		installed := time.Since(start)
		start = time.Now()
		err := WaitReady(ctx, c.Client, nsName, "app.kubernetes.io/instance="+tc.release, 2*time.Minute)
		latency := time.Since(start)
		var nre *NotReadyError
		if !errors.As(err, &nre) {
			t.Fatalf("%s: WaitReady = %v, want *NotReadyError", tc.release, err)
		}
		t.Logf("timing: %s: install %s, fail-fast after %s: %v; logs: %q", tc.reason, installed.Round(time.Millisecond), latency.Round(time.Millisecond), err, nre.Logs)
		if nre.Reason != tc.reason || nre.Deployment != tc.release || nre.Container != "app" || !strings.HasPrefix(nre.Pod, tc.release+"-") {
			t.Errorf("%s: got %+v", tc.release, nre)
		}
		if nre.Logs == "" {
			t.Errorf("%s: no logs and no explanation", tc.release)
		}
		if latency > 30*time.Second {
			t.Errorf("%s: not fast: %s", tc.release, latency)
		}
	}

	// A bad push to the running preview fails fast although the previous
	// version's pod is still ready; the fix rolls out past the failing
	// ReplicaSet.
	if _, err := releases.InstallOrUpgrade(ctx, InstallRequest{Namespace: nsName, Name: rel, ChartPath: chartPath,
		Values: appValues(testbed.FailImagePull, testSHA, number)}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	err = WaitReady(ctx, c.Client, nsName, selector, 2*time.Minute)
	var nre *NotReadyError
	if !errors.As(err, &nre) || nre.Reason != ReasonImagePullBackOff {
		t.Fatalf("bad push: WaitReady = %v", err)
	}
	t.Logf("timing: bad push fail-fast after %s", time.Since(start).Round(time.Millisecond))
	if _, err := releases.InstallOrUpgrade(ctx, InstallRequest{Namespace: nsName, Name: rel, ChartPath: chartPath,
		Values: appValues(imageRepo, "fixed", number)}); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := WaitReady(ctx, c.Client, nsName, selector, time.Minute); err != nil {
		t.Fatalf("fix: WaitReady = %v", err)
	}
	t.Logf("timing: fix ready after %s", time.Since(start).Round(time.Millisecond))

	// Delete: gone for real.
	start = time.Now()
	if err := namespaces.Delete(ctx, nsName); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: namespace deletion (with pods): %s", time.Since(start).Round(time.Millisecond))
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace still there: %v", err)
	}
}

func TestOwnershipForeignNamespace(t *testing.T) {
	c := testbed.Kube(t)
	ctx := context.Background()
	number := uniqueNumber()
	name := NamespaceName("acme/foreign", number)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	n := &Namespaces{Client: c.Client, Instance: "itest-owner", Log: testLogger(t)}

	err := n.Ensure(ctx, name, "acme/foreign", number)
	if !errors.Is(err, model.ErrNotOwned) || !strings.Contains(err.Error(), LabelManagedBy) {
		t.Errorf("Ensure = %v, want model.ErrNotOwned naming %s", err, LabelManagedBy)
	}
	err = n.Delete(ctx, name)
	if !errors.Is(err, model.ErrNotOwned) {
		t.Errorf("Delete = %v, want model.ErrNotOwned", err)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil || len(ns.Labels[LabelManagedBy]) > 0 {
		t.Fatalf("foreign namespace was touched: %+v %v", ns, err)
	}
}

func TestDeleteUIDPreconditionOnAPIServer(t *testing.T) {
	// The API server itself refuses a delete whose UID precondition does
	// not match, which is what protects a re-created namespace.
	c := testbed.Kube(t)
	ctx := context.Background()
	number := uniqueNumber()
	n := &Namespaces{Client: c.Client, Instance: "itest-uid", Log: testLogger(t)}
	name := NamespaceName("acme/uid", number)
	if err := n.Ensure(ctx, name, "acme/uid", number); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	err := n.deleteUID(ctx, name, types.UID("00000000-0000-0000-0000-000000000000"))
	if !apierrors.IsConflict(err) {
		t.Fatalf("delete with a wrong UID = %v, want Conflict", err)
	}
	ns, err := c.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err != nil || ns.DeletionTimestamp != nil {
		t.Fatalf("namespace was deleted: %v", err)
	}
	// Ensure on a terminating namespace says so.
	if err := n.deleteUID(ctx, name, ns.UID); err != nil {
		t.Fatal(err)
	}
	if err := n.Ensure(ctx, name, "acme/uid", number); !errors.Is(err, ErrTerminating) {
		t.Errorf("Ensure on a terminating namespace = %v, want ErrTerminating", err)
	}
	start := time.Now()
	if err := n.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: empty namespace deletion: %s", time.Since(start).Round(time.Millisecond))
}

func TestListOwnedOnAPIServer(t *testing.T) {
	c := testbed.Kube(t)
	ctx := context.Background()
	base := uniqueNumber()
	instance := fmt.Sprintf("itest-list-%d", base)
	mine := &Namespaces{Client: c.Client, Instance: instance}
	theirs := &Namespaces{Client: c.Client, Instance: instance + "-other"}
	var created []string
	t.Cleanup(func() {
		for _, name := range created {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})
	ensure := func(n *Namespaces, repo string, number int) string {
		name := NamespaceName(repo, number)
		if err := n.Ensure(ctx, name, repo, number); err != nil {
			t.Fatal(err)
		}
		created = append(created, name)
		return name
	}
	a := ensure(mine, "acme/list-a", base+1)
	b := ensure(mine, "acme/List.B", base+2)
	ensure(theirs, "acme/list-c", base+3)
	foreign := NamespaceName("acme/list-d", base+4)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: foreign,
		Labels: map[string]string{LabelManagedBy: ManagedBy}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	created = append(created, foreign)

	got, err := mine.ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]model.Namespace{
		a: {Name: a, Repo: "acme/list-a", Number: base + 1},
		b: {Name: b, Repo: "acme/list.b", Number: base + 2}, // identity is the lower-case name
	}
	if len(got) != len(want) {
		t.Fatalf("ListOwned = %+v, want %d namespaces", got, len(want))
	}
	for _, g := range got {
		w, ok := want[g.Name]
		if !ok || g.Repo != w.Repo || g.Number != w.Number || g.Terminating || time.Since(g.Created) > time.Minute {
			t.Errorf("unexpected %+v", g)
		}
	}
}

// TestReleaseLockedRecovery: a process that died mid-upgrade leaves the
// release pending; InstallOrUpgrade refuses with model.ErrLocked, Unlock
// uninstalls, and the next InstallOrUpgrade installs afresh.
func TestReleaseLockedRecovery(t *testing.T) {
	c := testbed.Kube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := testbed.Namespace(t, c)
	r := &Releases{RESTConfig: c.RESTConfig, Log: testLogger(t)}
	request := InstallRequest{Namespace: ns, Name: "preview", ChartPath: chartPath, Values: appValues(imageRepo, testSHA, 7)}
	if _, err := r.InstallOrUpgrade(ctx, request); err != nil {
		t.Fatal(err)
	}

	// What a process killed mid-upgrade leaves behind: revision 2,
	// pending-upgrade, written through Helm's own storage.
	cfg, err := r.config(ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	last, err := lastRevision(cfg, "preview")
	if err != nil {
		t.Fatal(err)
	}
	dead := *last
	dead.Version = 2
	dead.Info = &release.Info{Status: rcommon.StatusPendingUpgrade, FirstDeployed: last.Info.FirstDeployed,
		LastDeployed: time.Now().Add(-10 * time.Minute), Description: "Preparing upgrade"}
	if err := cfg.Releases.Create(&dead); err != nil {
		t.Fatal(err)
	}

	got, err := r.InstallOrUpgrade(ctx, request)
	if !errors.Is(err, model.ErrLocked) {
		t.Fatalf("InstallOrUpgrade on a pending release = %v, want model.ErrLocked", err)
	}
	if !got.Locked() || got.Status != "pending-upgrade" || got.Revision != 2 || time.Since(got.Updated) < 9*time.Minute {
		t.Errorf("locked release = %+v", got)
	}
	t.Logf("locked: %v", err)

	start := time.Now()
	if err := r.Unlock(ctx, ns, "preview"); err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: unlock (uninstall): %s", time.Since(start).Round(time.Millisecond))
	if got, err := r.Get(ctx, ns, "preview"); err != nil || got.Exists {
		t.Fatalf("after Unlock: %+v, %v", got, err)
	}

	got, err = r.InstallOrUpgrade(ctx, request)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 1 || got.Status != "deployed" {
		t.Errorf("reinstall: %+v", got)
	}
	if err := WaitReady(ctx, c.Client, ns, "app.kubernetes.io/instance=preview", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := r.Uninstall(ctx, ns, "preview"); err != nil {
		t.Fatal(err)
	}
	if err := r.Uninstall(ctx, ns, "preview"); err != nil {
		t.Errorf("second Uninstall: %v", err)
	}
}

// cancelAfterRecord cancels an operation right after Helm stored a new
// release record (the release is then pending).
type cancelAfterRecord struct {
	next   http.RoundTripper
	cancel context.CancelFunc
	fired  atomic.Bool
}

func (c *cancelAfterRecord) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/secrets") &&
		resp.StatusCode == http.StatusCreated && c.fired.CompareAndSwap(false, true) {
		c.cancel()
	}
	return resp, err
}

// TestReleaseCancelledMidOperation: cancelling ctx while Helm works leaves
// no pending lock behind (the revision is marked failed) and the next call
// proceeds without Unlock.
func TestReleaseCancelledMidOperation(t *testing.T) {
	c := testbed.Kube(t)
	ns := testbed.Namespace(t, c)
	ctx := context.Background()
	for _, tc := range []struct {
		verb     string
		revision int
	}{{"install", 1}, {"upgrade", 3}} {
		t.Run(tc.verb, func(t *testing.T) {
			opCtx, cancel := context.WithCancel(ctx)
			defer cancel()
			r := &Releases{RESTConfig: c.RESTConfig, Log: testLogger(t)}
			r.wrap = func(next http.RoundTripper) http.RoundTripper {
				return &cancelAfterRecord{next: next, cancel: cancel}
			}
			request := InstallRequest{Namespace: ns, Name: "preview", ChartPath: chartPath, Values: appValues(imageRepo, testSHA, 8)}
			_, err := r.InstallOrUpgrade(opCtx, request)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("InstallOrUpgrade = %v, want context.Canceled", err)
			}
			t.Logf("cancelled: %v", err)
			r.wrap = nil
			got, err := r.Get(ctx, ns, "preview")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after cancel: revision %d %s (%s)", got.Revision, got.Status, got.Description)
			if got.Locked() || got.Revision != tc.revision {
				t.Errorf("after cancel: %+v", got)
			}
			got, err = r.InstallOrUpgrade(ctx, request)
			if err != nil {
				t.Fatalf("next InstallOrUpgrade without Unlock: %v", err)
			}
			if got.Status != "deployed" || got.Revision != tc.revision+1 {
				t.Errorf("next: %+v", got)
			}
			if err := WaitReady(ctx, c.Client, ns, "app.kubernetes.io/instance=preview", time.Minute); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestUpgradeTakesBackEditedFields: objects are applied under previewd's
// own field manager, whatever the binary is called; a field someone else
// changed since (here: the image, as `kubectl set image` would) does not
// make the next upgrade fail with a server-side apply conflict, and the
// upgrade puts previewd's value back.
func TestUpgradeTakesBackEditedFields(t *testing.T) {
	c := testbed.Kube(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := testbed.Namespace(t, c)
	r := &Releases{RESTConfig: c.RESTConfig, Log: testLogger(t)}
	req := InstallRequest{Namespace: ns, Name: "preview", ChartPath: chartPath, Values: appValues(imageRepo, testSHA, 9)}
	if _, err := r.InstallOrUpgrade(ctx, req); err != nil {
		t.Fatal(err)
	}
	d := getDeployment(t, c, ns, "preview")
	managers := map[string]bool{}
	for _, f := range d.ManagedFields {
		managers[f.Manager] = true
	}
	if !managers[FieldManager] {
		t.Fatalf("deployment fields managed by %v, want %q", managers, FieldManager)
	}
	patch := `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"preview"},"spec":{"template":{"spec":{"containers":[{"name":"app","image":"registry.example/edited:by-hand"}]}}}}`
	force := true
	if _, err := c.Client.AppsV1().Deployments(ns).Patch(ctx, "preview", types.ApplyPatchType, []byte(patch),
		metav1.PatchOptions{FieldManager: "kubectl-edit", Force: &force}); err != nil {
		t.Fatal(err)
	}
	req.Values = appValues(imageRepo, shortSHA, 9)
	if _, err := r.InstallOrUpgrade(ctx, req); err != nil {
		t.Fatalf("upgrade after a hand edit: %v", err)
	}
	if img := getDeployment(t, c, ns, "preview").Spec.Template.Spec.Containers[0].Image; img != imageRepo+":"+shortSHA {
		t.Errorf("image after the upgrade = %q, want %s:%s", img, imageRepo, shortSHA)
	}
}
