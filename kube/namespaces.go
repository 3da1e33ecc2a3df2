package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/previewd/previewd/reconcile/model"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

const (
	defaultDeleteTimeout = 2 * time.Minute
	defaultPoll          = 500 * time.Millisecond
	deleteAttempts       = 3
)

// Namespaces creates, lists and deletes the namespaces that previewd owns.
// The zero value is not usable: Client and Instance are required.
type Namespaces struct {
	Client kubernetes.Interface
	// Instance is the value of LabelInstance that marks this previewd's
	// namespaces (a valid, non-empty label value).
	Instance string
	// PreviewRole, if set, is the ClusterRole that Ensure binds to Subject
	// in every namespace it creates or confirms (RoleBinding
	// RoleBindingName): previewd's rights inside its preview namespaces,
	// granted nowhere else.
	PreviewRole string
	Subject     rbacv1.Subject
	// Log receives one Info line per change; nil discards.
	Log *slog.Logger
	// DeleteTimeout bounds how long Delete waits for the namespace to go
	// away before reporting ErrStuckTerminating. Zero means 2m.
	DeleteTimeout time.Duration
	// Backoff is the pause before retry attempt n (1, 2) after an API
	// error in Delete. Nil means 2^(n-1) s: 1 s, 2 s.
	Backoff func(attempt int) time.Duration

	// poll is how often Delete checks whether the namespace is gone; zero
	// means 500 ms. Tests shorten it.
	poll time.Duration
}

func (n *Namespaces) log() *slog.Logger {
	if n.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return n.Log
}

func (n *Namespaces) check() error {
	if n.Client == nil {
		return errors.New("kube: Namespaces.Client is nil")
	}
	if n.Instance == "" {
		return errors.New("kube: Namespaces.Instance is empty")
	}
	if errs := validation.IsValidLabelValue(n.Instance); len(errs) > 0 {
		return fmt.Errorf("kube: Namespaces.Instance %q: %s", n.Instance, strings.Join(errs, "; "))
	}
	return nil
}

// Selector is the label selector of this instance's namespaces.
func (n *Namespaces) Selector() string {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelInstance: n.Instance}).String()
}

// ListOwned lists the namespaces that carry this instance's ownership
// labels, sorted by name.
func (n *Namespaces) ListOwned(ctx context.Context) ([]model.Namespace, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	var out []model.Namespace
	opts := metav1.ListOptions{LabelSelector: n.Selector(), Limit: 500}
	for {
		list, err := n.Client.CoreV1().Namespaces().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing owned namespaces: %w", err)
		}
		for i := range list.Items {
			ns := &list.Items[i]
			if !Owned(ns, n.Instance) { // belt and braces: the selector did this
				continue
			}
			out = append(out, NamespaceOf(ns))
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// NamespaceOf describes a namespace previewd owns from its labels and
// annotation.
func NamespaceOf(ns *corev1.Namespace) model.Namespace {
	num, _ := strconv.Atoi(ns.Labels[LabelPR])
	return model.Namespace{
		Name:        ns.Name,
		Repo:        strings.ToLower(ns.Annotations[AnnotationRepository]), // GitHub's names are case-insensitive
		Number:      num,
		Terminating: ns.DeletionTimestamp != nil,
		Created:     ns.CreationTimestamp.Time,
	}
}

// Ensure creates namespace name for pull request number of repo ("owner/
// name") with previewd's ownership labels and annotation. A namespace that
// already exists is fine if this instance owns it for the same repository
// and pull request (ErrTerminating if it is being deleted); otherwise the
// error wraps model.ErrNotOwned and names the label or annotation that differs.
func (n *Namespaces) Ensure(ctx context.Context, name, repo string, number int) error {
	_, err := n.EnsureCreated(ctx, name, repo, number, "")
	return err
}

// EnsureCreated is Ensure, and says whether it created the namespace. The
// namespace enforces Pod Security podSecurity (none when empty): one it
// creates from the start, one that exists gets its labels updated when
// they differ.
func (n *Namespaces) EnsureCreated(ctx context.Context, name, repo string, number int, podSecurity string) (created bool, err error) {
	if err := n.check(); err != nil {
		return false, err
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return false, fmt.Errorf("namespace name %q: %s", name, strings.Join(errs, "; "))
	}
	want := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			LabelManagedBy:  ManagedBy,
			LabelInstance:   n.Instance,
			LabelPR:         strconv.Itoa(number),
			LabelRepository: RepositoryLabel(repo),
		},
		Annotations: map[string]string{AnnotationRepository: repo},
	}}
	if podSecurity != "" {
		maps.Copy(want.Labels, psaLabels(podSecurity))
	}
	// Create, or inspect what is there; the namespace may vanish between
	// the two calls (a finished deletion), hence the small loop.
	for range 3 {
		ns, err := n.Client.CoreV1().Namespaces().Create(ctx, want, metav1.CreateOptions{})
		if err == nil {
			n.log().Info("created namespace", "namespace", name, "repo", repo, "pr", number, "uid", ns.UID)
			return true, n.EnsureAccess(ctx, name)
		}
		if !apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("creating namespace %s: %w", name, err)
		}
		live, err := n.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("reading namespace %s: %w", name, err)
		}
		if p := ownershipProblem(live, n.Instance); p != "" {
			return false, notOwnedError(name, n.Instance, p)
		}
		if got := live.Annotations[AnnotationRepository]; !strings.EqualFold(got, repo) {
			return false, notOwnedError(name, n.Instance, fmt.Sprintf("annotation %s is %q, not %q", AnnotationRepository, got, repo))
		}
		if got := live.Labels[LabelPR]; got != strconv.Itoa(number) {
			return false, notOwnedError(name, n.Instance, fmt.Sprintf("label %s is %q, not %q", LabelPR, got, strconv.Itoa(number)))
		}
		if live.DeletionTimestamp != nil {
			return false, fmt.Errorf("namespace %s (deletion requested %s): %w", name, live.DeletionTimestamp.UTC().Format(time.RFC3339), ErrTerminating)
		}
		if podSecurity != "" {
			if err := n.setPodSecurity(ctx, live, podSecurity); err != nil {
				return false, err
			}
		}
		return false, n.EnsureAccess(ctx, name)
	}
	return false, fmt.Errorf("creating namespace %s: it keeps being deleted and re-created concurrently", name)
}

// setPodSecurity updates the Pod Security labels of live (an owned
// namespace) when they are not those of level.
func (n *Namespaces) setPodSecurity(ctx context.Context, live *corev1.Namespace, level string) error {
	changed := false
	for k, v := range psaLabels(level) {
		if live.Labels[k] != v {
			live.Labels[k], changed = v, true
		}
	}
	if !changed {
		return nil
	}
	if _, err := n.Client.CoreV1().Namespaces().Update(ctx, live, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting Pod Security %s on namespace %s: %w", level, live.Name, err)
	}
	return nil
}

// RoleBindingName is the RoleBinding that binds PreviewRole in a preview
// namespace.
const RoleBindingName = "previewd"

// accessWait bounds the wait for a new RoleBinding to take effect (the
// API server's authorizer reads RBAC from an informer cache).
const accessWait = 15 * time.Second

// EnsureAccess binds PreviewRole to Subject in namespace name (an owned
// namespace) and, when the binding is new, waits until the API server
// grants it. Without PreviewRole it does nothing.
func (n *Namespaces) EnsureAccess(ctx context.Context, name string) error {
	if n.PreviewRole == "" {
		return nil
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: RoleBindingName, Namespace: name,
			Labels: map[string]string{LabelManagedBy: ManagedBy, LabelInstance: n.Instance}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: n.PreviewRole},
		Subjects: []rbacv1.Subject{n.Subject},
	}
	_, err := n.Client.RbacV1().RoleBindings(name).Create(ctx, rb, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		live, gerr := n.Client.RbacV1().RoleBindings(name).Get(ctx, RoleBindingName, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("reading the binding of %s in namespace %s: %w", n.PreviewRole, name, gerr)
		}
		if live.RoleRef == rb.RoleRef && len(live.Subjects) == 1 && live.Subjects[0] == n.Subject {
			return nil
		}
		// Bound for another role or identity (the chart's release was
		// renamed): a roleRef cannot change, so bind again.
		if err := n.Client.RbacV1().RoleBindings(name).Delete(ctx, RoleBindingName, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &live.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("replacing the outdated binding in namespace %s: %w", name, err)
		}
		_, err = n.Client.RbacV1().RoleBindings(name).Create(ctx, rb, metav1.CreateOptions{})
	}
	if err != nil {
		return fmt.Errorf("binding %s in namespace %s: %w", n.PreviewRole, name, err)
	}
	n.log().Info("bound previewd's preview role in its namespace", "namespace", name, "role", n.PreviewRole)
	// Wait until the binding is in effect: a request that the
	// authorizer has not caught up with would be refused.
	review := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authzv1.ResourceAttributes{Namespace: name, Verb: "list", Resource: "pods"}}}
	deadline := time.Now().Add(accessWait)
	for {
		got, err := n.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("role %s bound in namespace %s, but the API server does not grant it after %s (does the role allow listing pods?): %v",
				n.PreviewRole, name, accessWait, err)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// Rename moves namespace name, owned by this instance for pull request
// number of repository from, to repository to (the same repository under
// the name it was renamed or transferred to): its repository annotation
// and label change (and a namespace from before the fence gets Pod
// Security restricted, which the admission policy requires of every
// namespace previewd changes). The update carries the resourceVersion
// that was checked. A namespace that is not this instance's, or not from's
// for that pull request, is refused (model.ErrNotOwned); one already
// renamed to to, or gone, is success.
func (n *Namespaces) Rename(ctx context.Context, name, from, to string, number int) error {
	if err := n.check(); err != nil {
		return err
	}
	live, err := n.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // nothing to move
	}
	if err != nil {
		return fmt.Errorf("reading namespace %s: %w", name, err)
	}
	if p := ownershipProblem(live, n.Instance); p != "" {
		return notOwnedError(name, n.Instance, p)
	}
	if got := live.Labels[LabelPR]; got != strconv.Itoa(number) {
		return notOwnedError(name, n.Instance, fmt.Sprintf("label %s is %q, not %q", LabelPR, got, strconv.Itoa(number)))
	}
	got := live.Annotations[AnnotationRepository]
	if strings.EqualFold(got, to) {
		return nil
	}
	if !strings.EqualFold(got, from) {
		return notOwnedError(name, n.Instance, fmt.Sprintf("annotation %s is %q, not %q", AnnotationRepository, got, from))
	}
	live.Annotations[AnnotationRepository] = to
	live.Labels[LabelRepository] = RepositoryLabel(to)
	if _, ok := live.Labels[labelPSAEnforce]; !ok {
		// Created before previewd fenced its namespaces: the admission
		// policy lets previewd change only a namespace that enforces Pod
		// Security; the repository's level is set by its next deploy.
		maps.Copy(live.Labels, psaLabels(model.PodSecurityRestricted))
	}
	if _, err := n.Client.CoreV1().Namespaces().Update(ctx, live, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("moving namespace %s to repository %s: %w", name, to, err)
	}
	n.log().Info("namespace moved to the repository's new name", "namespace", name, "from", from, "to", to, "pr", number)
	return nil
}

// Delete deletes namespace name and waits until it is gone. It first reads
// the live object and refuses (model.ErrNotOwned) unless this instance owns it;
// the delete carries a UID precondition, so a namespace re-created by
// someone else in the meantime is never deleted. Propagation is Foreground.
// A namespace that does not exist is success.
//
// API errors are retried (3 attempts, Backoff between them). If the
// namespace is still there after DeleteTimeout, the error wraps
// ErrStuckTerminating and quotes its status conditions and remaining
// finalizers.
func (n *Namespaces) Delete(ctx context.Context, name string) error {
	if err := n.check(); err != nil {
		return err
	}
	timeout := n.DeleteTimeout
	if timeout <= 0 {
		timeout = defaultDeleteTimeout
	}
	deadline := time.Now().Add(timeout)
	log := n.log().With("namespace", name)

	var lastErr error
	for attempt := range deleteAttempts {
		if attempt > 0 {
			if err := sleep(ctx, n.backoff(attempt)); err != nil {
				return fmt.Errorf("deleting namespace %s: %w (last error: %v)", name, err, lastErr)
			}
		}
		live, err := n.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("deleting namespace %s: %w", name, ctx.Err())
			}
			lastErr = fmt.Errorf("reading namespace %s: %w", name, err)
			continue
		}
		if p := ownershipProblem(live, n.Instance); p != "" {
			return fmt.Errorf("refusing to delete: %w", notOwnedError(name, n.Instance, p))
		}
		if live.DeletionTimestamp == nil {
			err := n.deleteUID(ctx, name, live.UID)
			switch {
			case apierrors.IsNotFound(err):
				return nil
			case apierrors.IsConflict(err):
				// The UID precondition failed: the namespace was replaced
				// after the GET. Look again (the new one may not be ours).
				lastErr = fmt.Errorf("deleting namespace %s: replaced while deleting: %w", name, err)
				continue
			case err != nil:
				if ctx.Err() != nil {
					return fmt.Errorf("deleting namespace %s: %w", name, ctx.Err())
				}
				lastErr = fmt.Errorf("deleting namespace %s: %w", name, err)
				continue
			}
			log.Info("deleting namespace", "uid", live.UID, "repo", live.Annotations[AnnotationRepository], "pr", live.Labels[LabelPR])
		}
		gone, last, err := n.waitGone(ctx, name, live.UID, deadline)
		if gone {
			log.Info("namespace deleted")
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for namespace %s to be deleted: %w", name, ctx.Err())
			}
			lastErr = fmt.Errorf("waiting for namespace %s to be deleted: %w", name, err)
			if time.Now().Before(deadline) {
				continue
			}
		}
		return stuckError(name, timeout, last)
	}
	return fmt.Errorf("deleting namespace %s: %d attempts failed: %w", name, deleteAttempts, lastErr)
}

// deleteUID deletes namespace name only if its UID is still uid.
func (n *Namespaces) deleteUID(ctx context.Context, name string, uid types.UID) error {
	fg := metav1.DeletePropagationForeground
	return n.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{
		Preconditions:     &metav1.Preconditions{UID: &uid},
		PropagationPolicy: &fg,
	})
}

// waitGone polls until namespace name with uid no longer exists (a
// namespace of the same name with another UID counts as gone) or deadline
// passes. It returns the last object seen.
func (n *Namespaces) waitGone(ctx context.Context, name string, uid types.UID, deadline time.Time) (bool, *corev1.Namespace, error) {
	poll := n.poll
	if poll <= 0 {
		poll = defaultPoll
	}
	var last *corev1.Namespace
	for {
		live, err := n.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, last, nil
		case err != nil:
			return false, last, err
		case live.UID != uid:
			return true, last, nil
		}
		last = live
		wait := time.Until(deadline)
		if wait <= 0 {
			return false, last, nil
		}
		if err := sleep(ctx, min(poll, wait)); err != nil {
			return false, last, err
		}
	}
}

func (n *Namespaces) backoff(attempt int) time.Duration {
	if n.Backoff != nil {
		return n.Backoff(attempt)
	}
	return time.Duration(1<<(attempt-1)) * time.Second
}

// stuckError describes a namespace that did not go away: its phase,
// status conditions that are set, and remaining finalizers.
func stuckError(name string, timeout time.Duration, ns *corev1.Namespace) error {
	var parts []string
	if ns != nil {
		parts = append(parts, "phase "+string(ns.Status.Phase))
		for _, c := range ns.Status.Conditions {
			if c.Status != corev1.ConditionTrue {
				continue
			}
			s := string(c.Type)
			if c.Reason != "" {
				s += " (" + c.Reason + ")"
			}
			if c.Message != "" {
				s += ": " + c.Message
			}
			parts = append(parts, s)
		}
		var fins []string
		for _, f := range ns.Spec.Finalizers {
			fins = append(fins, string(f))
		}
		fins = append(fins, ns.Finalizers...)
		if len(fins) > 0 {
			parts = append(parts, "finalizers "+strings.Join(fins, ", "))
		}
	}
	detail := ""
	if len(parts) > 0 {
		detail = ": " + strings.Join(parts, "; ")
	}
	return fmt.Errorf("namespace %s still exists %s after deletion%s: %w", name, timeout, detail, ErrStuckTerminating)
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
