package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/previewd/previewd/internal/redact"
	"github.com/previewd/previewd/reconcile/model"
)

// Cluster is the cluster as the reconcile loop sees it (reconcile.Cluster):
// previewd's namespaces and their Helm releases, the foreign names that
// block a preview, and the deploy, readiness and deletion of one preview.
type Cluster struct {
	Client     kubernetes.Interface
	Namespaces *Namespaces
	Releases   *Releases
	// Charts loads each deploy's chart; nil loads chart directories only.
	Charts *Charts
	// Records, if set, lets Observe re-read (and decode) a namespace's
	// release only when its Helm records changed since the last cycle;
	// without it every release is read every cycle.
	Records RecordVersions
	// Redact scrubs credentials from messages shown on PRs and logged.
	Redact func(string) string
	Log    *slog.Logger

	mu   sync.Mutex
	seen map[string]seenRelease // namespace → release read at records signature
}

type seenRelease struct {
	sig string
	rel model.Release
}

// Observe lists owned namespaces and their releases, and which wanted
// names exist without previewd's labels.
func (c *Cluster) Observe(ctx context.Context, wanted []string) (model.ClusterObservation, error) {
	obs := model.ClusterObservation{Owned: map[string]model.Namespace{}, Foreign: map[string]bool{}, Releases: map[string]model.Release{}}
	owned, err := c.Namespaces.ListOwned(ctx)
	if err != nil {
		return obs, err
	}
	// Listed after the namespaces and before any release is read: a
	// record that changes after this list has a newer signature next cycle,
	// so a release read now is never kept past its change.
	var sigs map[string]string
	if c.Records != nil {
		if sigs, err = c.Records.Versions(ctx, ReleaseName); err != nil {
			// Not fatal: every release is read in full instead.
			if c.Log != nil {
				c.Log.Warn("listing Helm release records failed; reading every release", "err", c.redact(err.Error()))
			}
			sigs = nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]seenRelease, len(owned))
	// indexed: whether the namespace existed when the records were listed
	// (else its release must be read in full, and is not remembered).
	observe := func(ns model.Namespace, indexed bool) error {
		obs.Owned[ns.Name] = ns
		if ns.Terminating {
			return nil
		}
		if sigs != nil && indexed {
			sig, ok := sigs[ns.Name]
			if !ok {
				obs.Releases[ns.Name] = model.Release{} // no record: no release
				return nil
			}
			if prev, ok := c.seen[ns.Name]; ok && prev.sig == sig {
				obs.Releases[ns.Name] = prev.rel
				seen[ns.Name] = prev
				return nil
			}
		}
		r, err := c.Releases.Get(ctx, ns.Name, ReleaseName)
		if err != nil {
			return fmt.Errorf("reading release in %s: %w", ns.Name, err)
		}
		r.Values = nil // the planner needs the SHA (r.SHA), not the values; do not keep them per cycle
		obs.Releases[ns.Name] = r
		if sigs != nil && indexed {
			seen[ns.Name] = seenRelease{sig: sigs[ns.Name], rel: r}
		}
		return nil
	}
	for _, ns := range owned {
		if err := observe(ns, true); err != nil {
			return obs, err
		}
	}
	c.seen = seen
	obs.Workloads = c.workloads(ctx, obs.Owned)
	var missing []string
	for _, name := range wanted {
		if _, ok := obs.Owned[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		// One list of every namespace (in pages) instead of a GET per
		// wanted name: O(1) requests whatever the number of open PRs.
		live, err := c.allNamespaces(ctx)
		if err != nil {
			return obs, err
		}
		for _, name := range missing {
			ns, ok := live[name]
			switch {
			case !ok:
			case Owned(ns, c.Namespaces.Instance):
				// Created by a deploy still running from an earlier
				// cycle, after the list above: ours, not foreign.
				if err := observe(NamespaceOf(ns), false); err != nil {
					return obs, err
				}
			default:
				obs.Foreign[name] = true
			}
		}
	}
	obs.Complete = true
	return obs, nil
}

// allNamespaces lists every namespace of the cluster, by name.
func (c *Cluster) allNamespaces(ctx context.Context) (map[string]*corev1.Namespace, error) {
	out := map[string]*corev1.Namespace{}
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.Client.CoreV1().Namespaces().List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		for i := range list.Items {
			out[list.Items[i].Name] = &list.Items[i]
		}
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// workloads reads, in one list across namespaces (from the API server's
// watch cache), the Deployments that Helm applied (Helm labels every object
// it applies app.kubernetes.io/managed-by=Helm) and says for each owned
// namespace whether the preview's are Ready. A failed list is logged and
// reported as nil: nothing is concluded from workloads that cycle.
func (c *Cluster) workloads(ctx context.Context, owned map[string]model.Namespace) map[string]model.Workloads {
	if len(owned) == 0 {
		return map[string]model.Workloads{}
	}
	list, err := c.Client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/managed-by=Helm", ResourceVersion: "0"})
	if err != nil {
		if c.Log != nil {
			c.Log.Warn("listing the previews' Deployments failed; their readiness is not observed this cycle", "err", c.redact(err.Error()))
		}
		return nil
	}
	out := make(map[string]model.Workloads, len(owned))
	for name, ns := range owned {
		if !ns.Terminating {
			out[name] = model.Workloads{Ready: true}
		}
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	for i := range list.Items {
		d := &list.Items[i]
		w, ok := out[d.Namespace]
		if !ok || d.Annotations["meta.helm.sh/release-name"] != ReleaseName {
			continue
		}
		if ready, summary := deploymentReady(d); !ready && w.Ready {
			out[d.Namespace] = model.Workloads{NotReady: "deployment " + d.Name + ": " + summary}
		}
	}
	return out
}

// EnsureNamespace creates the preview namespace or confirms it is ours,
// and puts the repository's fence around it.
func (c *Cluster) EnsureNamespace(ctx context.Context, ns, repo string, number int, fence model.Fence) error {
	created, err := c.Namespaces.EnsureCreated(ctx, ns, repo, number, fence.PodSecurity)
	if created {
		// Whatever else failed: records of an earlier namespace of this
		// name must not be taken for this one's release.
		if perr := c.purgeRecords(ctx, ns); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	if err == nil {
		err = c.Namespaces.Fence(ctx, ns, fence)
	}
	if errors.Is(err, ErrTerminating) || (Unreachable(err) && ctx.Err() == nil) {
		// A PR reopened while its namespace is still being deleted: not
		// a failure of the SHA; deployed once the namespace is gone.
		return Transient(err)
	}
	return err
}

// Subject is who the API server says previewd is (SelfSubjectReview), as
// the subject of the RoleBinding of its preview role.
func Subject(ctx context.Context, client kubernetes.Interface) (rbacv1.Subject, error) {
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return rbacv1.Subject{}, fmt.Errorf("asking the API server who previewd is: %w", err)
	}
	user := review.Status.UserInfo.Username
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		if ns, name, ok := strings.Cut(rest, ":"); ok {
			return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}, nil
		}
	}
	if user == "" {
		return rbacv1.Subject{}, errors.New("the API server did not say who previewd is")
	}
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}, nil
}

// RenameNamespace moves an owned namespace to the repository's new name
// (Namespaces.Rename).
func (c *Cluster) RenameNamespace(ctx context.Context, ns, from, to string, number int) error {
	return c.Namespaces.Rename(ctx, ns, from, to, number)
}

// Apply installs or upgrades the preview release.
func (c *Cluster) Apply(ctx context.Context, ns string, ref model.ChartRef, values map[string]any, timeout time.Duration) error {
	charts := c.Charts
	if charts == nil {
		charts = &Charts{}
	}
	ch, err := charts.Load(ctx, ref)
	if err != nil {
		return err
	}
	_, err = c.Releases.InstallOrUpgrade(ctx, InstallRequest{Namespace: ns, Name: ReleaseName, Chart: ch, Values: values, Timeout: timeout})
	if err != nil && !errors.Is(err, model.ErrLocked) && ctx.Err() == nil && renderFailure(err) {
		// The chart was loaded and Helm could not render or apply what it
		// describes: the chart's problem, reported on the PR.
		return &ChartError{Ref: ref, Err: err}
	}
	if errors.Is(err, model.ErrLocked) {
		rel, gerr := c.Releases.Get(ctx, ns, ReleaseName)
		if gerr != nil {
			return fmt.Errorf("%w (and reading it: %v)", err, gerr)
		}
		return &model.LockedError{Status: rel.Status, Since: rel.Updated, Err: err}
	}
	if Unreachable(err) && ctx.Err() == nil {
		// The API server went away during the operation: not the SHA's
		// failure. A release left pending is taken over once stale.
		return Transient(err)
	}
	return err
}

// appFailure is an application that did not become ready.
type appFailure struct{ err *NotReadyError }

func (a appFailure) Error() string {
	if a.err.Logs == "" {
		return a.err.Error()
	}
	return a.err.Error() + "\n--- logs ---\n" + a.err.Logs
}
func (a appFailure) Unwrap() error    { return a.err }
func (a appFailure) AppFailure() bool { return true }

// FailedImage is the image a container could not pull ("" when the failure
// is not an image pull).
func (a appFailure) FailedImage() string {
	if a.err.Reason == ReasonImagePullBackOff || a.err.Reason == ReasonErrImagePull {
		return a.err.Image
	}
	return ""
}

// WaitReady waits for every Deployment in the preview namespace.
func (c *Cluster) WaitReady(ctx context.Context, ns string, timeout time.Duration) error {
	err := WaitReady(ctx, c.Client, ns, "", timeout, WithRedact(c.redact))
	var nr *NotReadyError
	switch {
	case errors.As(err, &nr) && nr.Reason == ReasonTimeout && Unreachable(nr.LastAPIError) && ctx.Err() == nil:
		// The deadline passed while the API server could not be asked:
		// nothing is known of the preview; not its failure.
		return Transient(err)
	case nr != nil:
		return appFailure{nr}
	case Unreachable(err) && ctx.Err() == nil:
		return Transient(err)
	}
	return err
}

func (c *Cluster) redact(s string) string {
	if c.Redact == nil {
		return redact.String(s)
	}
	return c.Redact(s)
}

// Unlock removes a release an interrupted operation left pending.
func (c *Cluster) Unlock(ctx context.Context, ns string) error {
	if err := c.Namespaces.EnsureAccess(ctx, ns); err != nil {
		return err
	}
	return c.Releases.Unlock(ctx, ns, ReleaseName)
}

// Delete uninstalls the release (cluster-scoped objects go with it) and
// deletes the namespace, waiting until it is gone.
func (c *Cluster) Delete(ctx context.Context, ns string) error {
	live, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return c.purgeRecords(ctx, ns) // gone: its records go too
	}
	if err != nil {
		return err
	}
	if !Owned(live, c.Namespaces.Instance) {
		return notOwnedError(ns, c.Namespaces.Instance, ownershipProblem(live, c.Namespaces.Instance))
	}
	if live.DeletionTimestamp == nil {
		// A namespace created before previewd bound its role there.
		if err := c.Namespaces.EnsureAccess(ctx, ns); err != nil {
			return err
		}
		// Uninstall (cluster-scoped objects go with it) is a Helm
		// operation: never cut half-way.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if err := c.Releases.Uninstall(uctx, ns, ReleaseName); err != nil {
			return fmt.Errorf("uninstalling the release in %s: %w", ns, err)
		}
	}
	if err := c.Namespaces.Delete(ctx, ns); err != nil {
		return err
	}
	return c.purgeRecords(ctx, ns)
}

// purgeRecords removes what the release store kept of a namespace that is
// gone or was created afresh (its records must not be taken for the new
// namespace's release).
func (c *Cluster) purgeRecords(ctx context.Context, ns string) error {
	if c.Releases == nil || c.Releases.Store == nil {
		return nil
	}
	n, err := c.Releases.Store.Purge(ctx, ns)
	if err == nil && n > 0 && c.Log != nil {
		c.Log.Info("removed the release records of a namespace that is gone", "namespace", ns, "records", n)
	}
	return err
}

// renderFailure tells a Helm error about the chart's templates or the
// objects they describe (which a new commit of the chart fixes) from a
// failure to reach the cluster.
func renderFailure(err error) bool {
	msg := err.Error()
	if _, ok := errors.AsType[*ConfineError](err); ok {
		return true
	}
	for _, s := range []string{"parse error", "execution error", "template:", "unable to build kubernetes objects", "error converting YAML",
		"values don't meet the specifications of the schema"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
