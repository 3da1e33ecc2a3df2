package demo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/previewd/previewd/kube"
)

// namespaceName is where previewd puts a PR's preview.
func namespaceName(repo string, number int) string { return kube.NamespaceName(repo, number) }

// preview is what the cluster shows of one preview namespace.
type preview struct {
	Namespace   string
	Exists      bool
	Terminating bool
	PR          string // the namespace's PR label

	Deployment string
	Image      string // repository without tag
	Tag        string
	Branch     string // PR_BRANCH of the app container, as the chart set it
	Replicas   int32
	Ready      int32
	Updated    int32

	Release       string
	Revision      int
	ReleaseStatus string // of the newest revision

	Hosts []string // Ingress hosts
}

// observe reads one namespace: its Deployment, Helm release and Ingress.
func (s *session) observe(ctx context.Context, ns string) (preview, error) {
	pv := preview{Namespace: ns}
	c := s.cluster.Client
	n, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return pv, nil
	}
	if err != nil {
		return pv, fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	pv.Exists = true
	pv.Terminating = n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating
	pv.PR = n.Labels[kube.LabelPR]

	deps, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return pv, fmt.Errorf("listing Deployments in %s: %w", ns, err)
	}
	if len(deps.Items) > 0 {
		d := deps.Items[0]
		pv.Deployment = d.Name
		if d.Status.ObservedGeneration >= d.Generation {
			pv.Ready, pv.Updated = d.Status.ReadyReplicas, d.Status.UpdatedReplicas
		}
		if d.Spec.Replicas != nil {
			pv.Replicas = *d.Spec.Replicas
		}
		if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 {
			pv.Image, pv.Tag = splitImage(cs[0].Image)
			for _, e := range cs[0].Env {
				if e.Name == "PR_BRANCH" {
					pv.Branch = e.Value
				}
			}
		}
	}

	// previewd keeps Helm's release records in its PostgreSQL (one row
	// per revision), not in Secrets.
	if err := s.release(ctx, ns, &pv); err != nil {
		return pv, err
	}

	ings, err := c.NetworkingV1().Ingresses(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return pv, fmt.Errorf("listing Ingresses in %s: %w", ns, err)
	}
	for _, in := range ings.Items {
		for _, r := range in.Spec.Rules {
			if r.Host != "" {
				pv.Hosts = append(pv.Hosts, r.Host)
			}
		}
	}
	return pv, nil
}

// release reads the newest revision of the namespace's Helm release from
// previewd's database.
func (s *session) release(ctx context.Context, ns string, pv *preview) error {
	conn, err := pgx.Connect(ctx, s.db.URL)
	if err != nil {
		return fmt.Errorf("reading the release records of %s: %w", ns, err)
	}
	defer conn.Close(ctx)
	err = conn.QueryRow(ctx, `SELECT name, version, status FROM helm_releases WHERE namespace = $1 ORDER BY version DESC LIMIT 1`, ns).
		Scan(&pv.Release, &pv.Revision, &pv.ReleaseStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the release records of %s: %w", ns, err)
	}
	return nil
}

// splitImage splits "registry/repo:tag" into repository and tag.
func splitImage(image string) (string, string) {
	slash := strings.LastIndexByte(image, '/')
	if colon := strings.LastIndexByte(image, ':'); colon > slash {
		return image[:colon], image[colon+1:]
	}
	return image, ""
}

// ownSelector selects the namespaces of the demo's previewd instance.
func (s *session) ownSelector() string {
	return labels.SelectorFromSet(labels.Set{kube.LabelManagedBy: kube.ManagedBy, kube.LabelInstance: s.o.Instance}).String()
}

// ownNamespaces lists the namespaces of the demo's previewd instance,
// sorted by PR number.
func (s *session) ownNamespaces(ctx context.Context) ([]corev1.Namespace, error) {
	list, err := s.cluster.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: s.ownSelector()})
	if err != nil {
		return nil, fmt.Errorf("listing previewd's namespaces: %w", err)
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool {
		a, _ := strconv.Atoi(items[i].Labels[kube.LabelPR])
		b, _ := strconv.Atoi(items[j].Labels[kube.LabelPR])
		if a != b {
			return a < b
		}
		return items[i].Name < items[j].Name
	})
	return items, nil
}

// deleteOwnNamespaces removes what the demo's previewd created in a
// control plane the demo did not start. It does not wait.
func (s *session) deleteOwnNamespaces(ctx context.Context) {
	items, err := s.ownNamespaces(ctx)
	if err != nil {
		s.printf("warning: %v\n", err)
		return
	}
	for _, ns := range items {
		err := s.cluster.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			s.printf("warning: deleting namespace %s: %v\n", ns.Name, err)
		}
	}
}

// describe summarises a preview namespace and its pods for a failure
// report.
func (s *session) describe(ctx context.Context, ns string) string {
	pv, err := s.observe(ctx, ns)
	if err != nil {
		return ns + ": " + err.Error()
	}
	if !pv.Exists {
		return ns + ": no such namespace"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: terminating=%t release=%s revision=%d status=%s deployment=%s tag=%s ready=%d/%d updated=%d",
		ns, pv.Terminating, pv.Release, pv.Revision, orNone(pv.ReleaseStatus), pv.Deployment, short(pv.Tag), pv.Ready, pv.Replicas, pv.Updated)
	pods, err := s.cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return b.String() + "\n  pods: " + err.Error()
	}
	if len(pods.Items) == 0 {
		b.WriteString("\n  no pods")
	}
	for _, pod := range pods.Items {
		var conds []string
		for _, c := range pod.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s", c.Type, c.Status))
		}
		fmt.Fprintf(&b, "\n  pod %s on %q: %s %s", pod.Name, pod.Spec.NodeName, pod.Status.Phase, strings.Join(conds, " "))
		for _, cs := range pod.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				fmt.Fprintf(&b, " (%s waiting: %s)", cs.Name, w.Reason)
			}
		}
	}
	return b.String()
}
