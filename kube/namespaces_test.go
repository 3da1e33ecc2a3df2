package kube

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var nsGVR = corev1.SchemeGroupVersion.WithResource("namespaces")

func ownedNS(name, instance, repo, pr string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, UID: types.UID("uid-" + name),
		Labels:      map[string]string{LabelManagedBy: ManagedBy, LabelInstance: instance, LabelPR: pr, LabelRepository: RepositoryLabel(repo)},
		Annotations: map[string]string{AnnotationRepository: repo},
	}}
}

func foreignNS(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"team": "x"}}}
}

func newNamespaces(objs ...runtime.Object) (*Namespaces, *fake.Clientset) {
	cs := fake.NewClientset(objs...)
	return &Namespaces{Client: cs, Instance: "test", poll: 10 * time.Millisecond, Backoff: func(int) time.Duration { return time.Millisecond }}, cs
}

func TestEnsureCreatesOwnedNamespace(t *testing.T) {
	n, cs := newNamespaces()
	ctx := context.Background()
	if err := n.Ensure(ctx, "pr-web-12", "Acme/Web", 12); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "pr-web-12", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{LabelManagedBy: "previewd", LabelInstance: "test", LabelPR: "12", LabelRepository: "acme.web"}
	for k, v := range want {
		if ns.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, ns.Labels[k], v)
		}
	}
	if got := ns.Annotations[AnnotationRepository]; got != "Acme/Web" {
		t.Errorf("annotation = %q", got)
	}
	if !Owned(ns, "test") || Owned(ns, "other") {
		t.Error("Owned is wrong")
	}
	// Idempotent, and GitHub's case-insensitivity is respected.
	if err := n.Ensure(ctx, "pr-web-12", "acme/web", 12); err != nil {
		t.Errorf("second Ensure: %v", err)
	}
}

func TestEnsureRefusesWhatIsNotOurs(t *testing.T) {
	terminating := ownedNS("pr-web-5", "test", "acme/web", "5")
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	n, cs := newNamespaces(
		foreignNS("pr-web-1"),
		ownedNS("pr-web-2", "other-instance", "acme/web", "2"),
		ownedNS("pr-web-3", "test", "someone/web", "3"),
		ownedNS("pr-web-4", "test", "acme/web", "40"),
		terminating,
	)
	tests := []struct {
		name, mention string
		number        int
		want          error
	}{
		{"pr-web-1", "label app.kubernetes.io/managed-by=previewd is missing", 1, model.ErrNotOwned},
		{"pr-web-2", `label previewd.dev/instance is "other-instance", not "test"`, 2, model.ErrNotOwned},
		{"pr-web-3", `annotation previewd.dev/repository is "someone/web"`, 3, model.ErrNotOwned},
		{"pr-web-4", `label previewd.dev/pr is "40"`, 4, model.ErrNotOwned},
		{"pr-web-5", "pr-web-5", 5, ErrTerminating},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := n.Ensure(context.Background(), tt.name, "acme/web", tt.number)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Ensure = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.mention) || !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q should mention %q and the namespace", err, tt.mention)
			}
		})
	}
	// The cluster tells the executor a terminating namespace is a wait,
	// not a failed attempt (reconcile.Transient).
	c := &Cluster{Namespaces: n}
	var tr interface{ Transient() bool }
	if err := c.EnsureNamespace(context.Background(), "pr-web-5", "acme/web", 5, model.Fence{}); !errors.As(err, &tr) || !tr.Transient() {
		t.Errorf("EnsureNamespace on a terminating namespace = %v, want a transient error", err)
	}
	// Nothing was changed.
	ns, _ := cs.CoreV1().Namespaces().Get(context.Background(), "pr-web-5", metav1.GetOptions{})
	if ns.DeletionTimestamp == nil {
		t.Error("the terminating namespace changed")
	}
	ns, _ = cs.CoreV1().Namespaces().Get(context.Background(), "pr-web-1", metav1.GetOptions{})
	if ns.Labels[LabelManagedBy] != "" {
		t.Error("a foreign namespace was adopted")
	}
}

func TestEnsureValidates(t *testing.T) {
	n, _ := newNamespaces()
	if err := n.Ensure(context.Background(), "Not_A_Label", "acme/web", 1); err == nil {
		t.Error("invalid name accepted")
	}
	n.Instance = ""
	if err := n.Ensure(context.Background(), "pr-web-1", "acme/web", 1); err == nil {
		t.Error("empty instance accepted")
	}
	n.Instance = "bad value!"
	if _, err := n.ListOwned(context.Background()); err == nil {
		t.Error("invalid instance accepted")
	}
}

func TestListOwned(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	b := ownedNS("pr-b-2", "test", "acme/b", "2")
	b.CreationTimestamp = created
	b.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	n, _ := newNamespaces(
		b,
		ownedNS("pr-a-1", "test", "acme/a", "1"),
		ownedNS("pr-c-3", "other", "acme/c", "3"),
		foreignNS("pr-d-4"),
		foreignNS("kube-system"),
	)
	got, err := n.ListOwned(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "pr-a-1" || got[1].Name != "pr-b-2" {
		t.Fatalf("ListOwned = %+v", got)
	}
	if g := got[1]; g.Repo != "acme/b" || g.Number != 2 || !g.Terminating || !g.Created.Equal(created.Time) {
		t.Errorf("pr-b-2 = %+v", g)
	}
	if got[0].Terminating {
		t.Error("pr-a-1 is not terminating")
	}
}

// deleteRecorder records namespace deletions and lets a test replace what
// a deletion does.
type deleteRecorder struct {
	mu      sync.Mutex
	options []metav1.DeleteOptions
}

func (r *deleteRecorder) record(a k8stesting.Action) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.options = append(r.options, a.(k8stesting.DeleteActionImpl).DeleteOptions)
}

func (r *deleteRecorder) calls() []metav1.DeleteOptions {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]metav1.DeleteOptions(nil), r.options...)
}

func TestDeleteOwned(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	var rec deleteRecorder
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rec.record(a)
		return false, nil, nil // fall through to the tracker
	})
	if err := n.Delete(context.Background(), "pr-web-1"); err != nil {
		t.Fatal(err)
	}
	calls := rec.calls()
	if len(calls) != 1 {
		t.Fatalf("%d deletes, want 1", len(calls))
	}
	o := calls[0]
	if o.Preconditions == nil || o.Preconditions.UID == nil || *o.Preconditions.UID != "uid-pr-web-1" {
		t.Errorf("no UID precondition: %+v", o.Preconditions)
	}
	if o.PropagationPolicy == nil || *o.PropagationPolicy != metav1.DeletePropagationForeground {
		t.Errorf("propagation = %v, want Foreground", o.PropagationPolicy)
	}
	if _, err := cs.CoreV1().Namespaces().Get(context.Background(), "pr-web-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace still there: %v", err)
	}
	// Gone already: success.
	if err := n.Delete(context.Background(), "pr-web-1"); err != nil {
		t.Errorf("Delete of a missing namespace: %v", err)
	}
}

func TestDeleteRefusesForeign(t *testing.T) {
	n, cs := newNamespaces(foreignNS("pr-web-1"), ownedNS("pr-web-2", "other", "acme/web", "2"))
	var rec deleteRecorder
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		rec.record(a)
		return false, nil, nil
	})
	for _, name := range []string{"pr-web-1", "pr-web-2"} {
		err := n.Delete(context.Background(), name)
		if !errors.Is(err, model.ErrNotOwned) {
			t.Errorf("Delete(%s) = %v, want model.ErrNotOwned", name, err)
		}
		if _, err := cs.CoreV1().Namespaces().Get(context.Background(), name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if len(rec.calls()) != 0 {
		t.Errorf("a delete request was sent for a foreign namespace")
	}
}

func TestDeleteStuckTerminating(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	n.DeleteTimeout = 200 * time.Millisecond
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// What the namespace controller does when a finalizer never goes.
		obj, err := cs.Tracker().Get(nsGVR, "", "pr-web-1")
		if err != nil {
			return true, nil, err
		}
		ns := obj.(*corev1.Namespace).DeepCopy()
		ns.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		ns.Spec.Finalizers = []corev1.FinalizerName{"kubernetes"}
		ns.Status.Phase = corev1.NamespaceTerminating
		ns.Status.Conditions = []corev1.NamespaceCondition{
			{Type: corev1.NamespaceDeletionDiscoveryFailure, Status: corev1.ConditionFalse, Reason: "ResourcesDiscovered"},
			{Type: corev1.NamespaceFinalizersRemaining, Status: corev1.ConditionTrue, Reason: "SomeFinalizersRemain",
				Message: "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"},
		}
		return true, nil, cs.Tracker().Update(nsGVR, ns, "")
	})
	start := time.Now()
	err := n.Delete(context.Background(), "pr-web-1")
	if !errors.Is(err, ErrStuckTerminating) {
		t.Fatalf("Delete = %v, want ErrStuckTerminating", err)
	}
	for _, want := range []string{"NamespaceFinalizersRemaining", "example.com/hold", "finalizers kubernetes", "phase Terminating"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "ResourcesDiscovered") {
		t.Errorf("error quotes a condition that is not true: %q", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s with a 200ms DeleteTimeout", d)
	}
}

func TestDeleteRetriesAPIErrors(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	var backoffs []int
	n.Backoff = func(attempt int) time.Duration { backoffs = append(backoffs, attempt); return time.Millisecond }
	fails := 2
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if fails > 0 {
			fails--
			return true, nil, apierrors.NewInternalError(errors.New("etcd hiccup"))
		}
		return false, nil, nil
	})
	if err := n.Delete(context.Background(), "pr-web-1"); err != nil {
		t.Fatal(err)
	}
	if len(backoffs) != 2 || backoffs[0] != 1 || backoffs[1] != 2 {
		t.Errorf("backoffs = %v, want [1 2]", backoffs)
	}

	// Three failures: give up and say why.
	n2, cs2 := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	cs2.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcd down"))
	})
	err := n2.Delete(context.Background(), "pr-web-1")
	if err == nil || !strings.Contains(err.Error(), "3 attempts") || !strings.Contains(err.Error(), "etcd down") {
		t.Errorf("Delete = %v", err)
	}
}

func TestDeleteNeverDeletesAReplacement(t *testing.T) {
	// Between the GET and the DELETE the namespace is deleted and someone
	// else creates one of the same name: the UID precondition fails and
	// the next look finds a foreign namespace.
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o := a.(k8stesting.DeleteActionImpl).DeleteOptions
		obj, err := cs.Tracker().Get(nsGVR, "", "pr-web-1")
		if err != nil {
			return true, nil, err
		}
		live := obj.(*corev1.Namespace)
		if o.Preconditions != nil && o.Preconditions.UID != nil && *o.Preconditions.UID != live.UID {
			return true, nil, apierrors.NewConflict(nsGVR.GroupResource(), "pr-web-1", errors.New("Precondition failed: UID in precondition"))
		}
		return false, nil, nil
	})
	cs.PrependReactor("get", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// The first GET sees ours; then it is replaced by a foreign one.
		obj, _ := cs.Tracker().Get(nsGVR, "", "pr-web-1")
		if ns := obj.(*corev1.Namespace); Owned(ns, "test") {
			repl := foreignNS("pr-web-1")
			repl.UID = "someone-elses"
			_ = cs.Tracker().Update(nsGVR, repl, "")
			return true, ns, nil
		}
		return false, nil, nil
	})
	err := n.Delete(context.Background(), "pr-web-1")
	if !errors.Is(err, model.ErrNotOwned) {
		t.Fatalf("Delete = %v, want model.ErrNotOwned", err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(context.Background(), "pr-web-1", metav1.GetOptions{})
	if err != nil || ns.UID != "someone-elses" {
		t.Errorf("replacement namespace: %v %v", ns, err)
	}
}

func TestDeleteWaitTreatsNewUIDAsGone(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		// Deleted at once and re-created by someone else before we look.
		repl := foreignNS("pr-web-1")
		repl.UID = "new"
		return true, nil, cs.Tracker().Update(nsGVR, repl, "")
	})
	if err := n.Delete(context.Background(), "pr-web-1"); err != nil {
		t.Fatal(err)
	}
	if ns, err := cs.CoreV1().Namespaces().Get(context.Background(), "pr-web-1", metav1.GetOptions{}); err != nil || ns.UID != "new" {
		t.Errorf("the re-created namespace must stay: %v %v", ns, err)
	}
}

func TestDeleteHonoursContext(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	cs.PrependReactor("delete", "namespaces", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, nil // never goes away
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := n.Delete(ctx, "pr-web-1")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Delete = %v, want context.DeadlineExceeded", err)
	}
}

// TestRenameMovesOnlyOurNamespace: the repository annotation and label
// follow a renamed repository; a namespace that is not this instance's, or
// another PR's or repository's, is refused and left as it was.
func TestRenameMovesOnlyOurNamespace(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"), ownedNS("pr-web-2", "other", "acme/web", "2"),
		ownedNS("pr-api-3", "test", "acme/api", "3"), foreignNS("pr-web-4"))
	ctx := context.Background()
	if err := n.Rename(ctx, "pr-web-1", "Acme/Web", "acme/shop", 1); err != nil {
		t.Fatal(err)
	}
	ns, _ := cs.CoreV1().Namespaces().Get(ctx, "pr-web-1", metav1.GetOptions{})
	if ns.Annotations[AnnotationRepository] != "acme/shop" || ns.Labels[LabelRepository] != "acme.shop" || !Owned(ns, "test") || ns.Labels[LabelPR] != "1" {
		t.Errorf("moved namespace: labels %v, annotations %v", ns.Labels, ns.Annotations)
	}
	if err := n.Rename(ctx, "pr-web-1", "acme/web", "acme/shop", 1); err != nil {
		t.Errorf("Rename again: %v, want success (already moved)", err)
	}
	if err := n.Rename(ctx, "pr-gone-9", "acme/web", "acme/shop", 9); err != nil {
		t.Errorf("Rename of a namespace that is gone: %v, want success", err)
	}
	for _, c := range []struct {
		name, from string
		number     int
	}{{"pr-web-2", "acme/web", 2}, {"pr-api-3", "acme/web", 3}, {"pr-web-4", "acme/web", 4}, {"pr-web-1", "acme/other", 1}, {"pr-api-3", "acme/api", 4}} {
		before, _ := cs.CoreV1().Namespaces().Get(ctx, c.name, metav1.GetOptions{})
		err := n.Rename(ctx, c.name, c.from, "acme/other", c.number)
		if !errors.Is(err, model.ErrNotOwned) {
			t.Errorf("Rename %s from %s #%d: %v, want ErrNotOwned", c.name, c.from, c.number, err)
		}
		after, _ := cs.CoreV1().Namespaces().Get(ctx, c.name, metav1.GetOptions{})
		if after.Annotations[AnnotationRepository] != before.Annotations[AnnotationRepository] || after.Labels[LabelRepository] != before.Labels[LabelRepository] {
			t.Errorf("refused Rename changed %s", c.name)
		}
	}
}

// TestEnsureAccessReplacesAnOutdatedBinding: the RoleBinding of the
// preview role is created once; one left bound to another role (the
// chart's release renamed) is replaced, since a roleRef cannot change.
func TestEnsureAccessReplacesAnOutdatedBinding(t *testing.T) {
	n, cs := newNamespaces(ownedNS("pr-web-1", "test", "acme/web", "1"))
	n.PreviewRole = "previewd-preview"
	n.Subject = rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "previewd", Namespace: "previewd"}
	cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authzv1.SelfSubjectAccessReview)
		r.Status.Allowed = true
		return true, r, nil
	})
	ctx := context.Background()
	if err := n.EnsureAccess(ctx, "pr-web-1"); err != nil {
		t.Fatal(err)
	}
	rb, err := cs.RbacV1().RoleBindings("pr-web-1").Get(ctx, RoleBindingName, metav1.GetOptions{})
	if err != nil || rb.RoleRef.Name != "previewd-preview" || len(rb.Subjects) != 1 || rb.Subjects[0] != n.Subject {
		t.Fatalf("binding: %+v %v", rb, err)
	}
	cs.ClearActions()
	if err := n.EnsureAccess(ctx, "pr-web-1"); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions() {
		if a.GetVerb() == "delete" {
			t.Errorf("an up-to-date binding was replaced: %v", a)
		}
	}
	n.PreviewRole = "previewd-renamed-preview"
	if err := n.EnsureAccess(ctx, "pr-web-1"); err != nil {
		t.Fatal(err)
	}
	if rb, _ := cs.RbacV1().RoleBindings("pr-web-1").Get(ctx, RoleBindingName, metav1.GetOptions{}); rb.RoleRef.Name != "previewd-renamed-preview" {
		t.Errorf("outdated binding kept: %+v", rb.RoleRef)
	}
}
