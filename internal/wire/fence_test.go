package wire_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile/model"
)

// TestPreviewFence: every preview namespace is fenced with the
// repository's settings (defaults first, then changed: the change upgrades
// the previews and the fence follows); the API server enforces what it
// can, and a PR whose pods it refuses (Pod Security, the quota) is told
// why in the API server's words. kwok does not enforce NetworkPolicies:
// their content is checked, not their effect.
func TestPreviewFence(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n := e.Open("Fenced", "fenced", e2e.SHA("fence-1"))
	e.MustRunOnce(d)
	if p := e.Row(d, n); p.Status != model.StatusReady {
		t.Fatalf("charts/preview-app under the default fence (restricted): %s %s", p.Status, p.LastError)
	}
	ctx := context.Background()
	kc := e.Kube.Client
	ns := e.NS(n)
	live, err := kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := live.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("namespace enforces Pod Security %q, want restricted", got)
	}
	np, err := kc.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.FenceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) != 0 || len(np.Spec.PolicyTypes) != 2 {
		t.Errorf("NetworkPolicy must select every pod for ingress and egress: %+v", np.Spec)
	}
	if got := peers(np.Spec.Ingress[0].From); got != "pods of the namespace; namespaces kubernetes.io/metadata.name=ingress-nginx" {
		t.Errorf("ingress from: %s", got)
	}
	if len(np.Spec.Egress) != 2 || peers(np.Spec.Egress[1].To) != "namespaces kubernetes.io/metadata.name=kube-system, pods k8s-app=kube-dns" ||
		len(np.Spec.Egress[1].Ports) != 2 || np.Spec.Egress[1].Ports[0].Port.IntValue() != 53 {
		t.Errorf("egress (default: the namespace and DNS only): %+v", np.Spec.Egress)
	}
	q, err := kc.CoreV1().ResourceQuotas(ns).Get(ctx, kube.FenceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := q.Spec.Hard; h.Pods().String() != "10" || h.Name("limits.memory", "").String() != "2Gi" {
		t.Errorf("quota: %v", h)
	}
	lr, err := kc.CoreV1().LimitRanges(ns).Get(ctx, kube.FenceName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l := lr.Spec.Limits[0]; l.Type != corev1.LimitTypeContainer || l.Default.Cpu().String() != "500m" || l.DefaultRequest.Memory().String() != "128Mi" {
		t.Errorf("limit range: %+v", l)
	}

	// The repository's fence changes: the preview is upgraded and its
	// fence follows.
	e.AddRepoConfig(`fence:
  pod_security: baseline
  ingress_from: {team: edge}
  egress_allow: [0.0.0.0/0, 10.20.0.0/16]
  quota: {pods: "4", limits.cpu: "1"}`)
	d = e.Daemon(false)
	e.MustRunOnce(d)
	live, _ = kc.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if got := live.Labels["pod-security.kubernetes.io/enforce"]; got != "baseline" {
		t.Errorf("after the change: Pod Security %q, want baseline", got)
	}
	np, _ = kc.NetworkingV1().NetworkPolicies(ns).Get(ctx, kube.FenceName, metav1.GetOptions{})
	var blocks []string
	for _, r := range np.Spec.Egress[2:] {
		b := r.To[0].IPBlock
		blocks = append(blocks, b.CIDR+" except "+strings.Join(b.Except, ","))
	}
	if got := strings.Join(blocks, "; "); got != "0.0.0.0/0 except 169.254.169.254/32; 10.20.0.0/16 except " {
		t.Errorf("egress allow-list: %s (the metadata address must be excepted)", got)
	}
	if got := peers(np.Spec.Ingress[0].From); got != "pods of the namespace; namespaces team=edge" {
		t.Errorf("ingress from after the change: %s", got)
	}
	q, _ = kc.CoreV1().ResourceQuotas(ns).Get(ctx, kube.FenceName, metav1.GetOptions{})
	if h := q.Spec.Hard; h.Pods().String() != "4" || h.Name("limits.cpu", "").String() != "1" || h.Name("requests.memory", "").String() != "1Gi" {
		t.Errorf("quota after the change (defaults kept for what is not set): %v", h)
	}
	if p := e.Row(d, n); p.Status != model.StatusReady {
		t.Errorf("after the fence change: %s %s", p.Status, p.LastError)
	}
}

// TestFenceRefusalsReachThePR: pods the API server refuses in a preview
// namespace (a privileged container or one adding a capability under Pod
// Security, a container over the quota) fail the deploy at once, and the PR quotes why.
func TestFenceRefusalsReachThePR(t *testing.T) {
	for _, c := range []struct {
		name, values, fence, want string
	}{
		{"privileged container", "      securityContext:\n        privileged: true\n        allowPrivilegeEscalation: true\n", "", `violates PodSecurity "restricted:latest": privileged`},
		{"container adding a capability", "      securityContext:\n        capabilities:\n          add: [NET_ADMIN]\n", "", `violates PodSecurity "restricted:latest"`},
		{"over the quota", "      resources:\n        limits:\n          cpu: \"3\"\n", "", "exceeded quota: " + kube.FenceName},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := e2e.New(t, "")
			editConfig(t, e, func(s string) string {
				return strings.Replace(strings.Replace(s, "deploy_timeout: 60s", "deploy_timeout: 60s\nmax_attempts: 1", 1), "    values:\n", "    values:\n"+c.values, 1)
			})
			d := e.Daemon(false)
			n := e.Open("Refused", "refused", e2e.SHA("refused-"+c.name))
			e.MustRunOnce(d)
			p := e.Row(d, n)
			if p.Status != model.StatusFailed || !strings.Contains(p.LastError, kube.ReasonFailedCreate) || !strings.Contains(p.LastError, c.want) {
				t.Fatalf("preview %s: %s; want failed with %s quoting %q", p.Status, p.LastError, kube.ReasonFailedCreate, c.want)
			}
			body := e.OneComment(n).Body
			if !strings.Contains(body, c.want) {
				t.Errorf("the PR comment does not say why:\n%s", body)
			}
			res, err := d.Loop.Plan(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, s := range res.Skipped {
				if s.Number == n && strings.Contains(s.Reason, c.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("plan does not say why: %+v", res.Skipped)
			}
		})
	}
}

// peers describes NetworkPolicy peers for the assertions above.
func peers(ps []networkingv1.NetworkPolicyPeer) string {
	var out []string
	for _, p := range ps {
		var parts []string
		if p.NamespaceSelector != nil {
			parts = append(parts, "namespaces "+labelsOf(p.NamespaceSelector.MatchLabels))
		}
		if p.PodSelector != nil {
			if len(p.PodSelector.MatchLabels) == 0 && p.NamespaceSelector == nil {
				parts = append(parts, "pods of the namespace")
			} else {
				parts = append(parts, "pods "+labelsOf(p.PodSelector.MatchLabels))
			}
		}
		out = append(out, strings.Join(parts, ", "))
	}
	return strings.Join(out, "; ")
}

func labelsOf(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return strings.Join(out, ",")
}

// TestCopySecrets: the Secrets named in copy_secrets are copied into each
// preview namespace, and copied again when the source changes (the next
// cycle upgrades the previews); their values appear in no comment.
func TestCopySecrets(t *testing.T) {
	e := e2e.New(t, "")
	ctx := context.Background()
	kc := e.Kube.Client
	src := testbed.Namespace(t, e.Kube)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{"r.example.com":{"auth":"c2VjcmV0LW9uZQ=="}}}`)}}
	if _, err := kc.CoreV1().Secrets(src).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.AddRepoConfig("copy_secrets: {from: " + src + ", names: [regcred]}")
	editConfig(t, e, func(s string) string {
		return strings.Replace(s, "    values:\n", "    values:\n      imagePullSecrets: [{name: regcred}]\n", 1)
	})
	d := e.Daemon(false)
	n := e.Open("Copies", "copies", e2e.SHA("copy-1"))
	e.MustRunOnce(d)
	copied := func() *corev1.Secret {
		t.Helper()
		s, err := kc.CoreV1().Secrets(e.NS(n)).Get(ctx, "regcred", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the copy in %s: %v", e.NS(n), err)
		}
		return s
	}
	c := copied()
	if c.Type != corev1.SecretTypeDockerConfigJson || string(c.Data[".dockerconfigjson"]) != string(secret.Data[".dockerconfigjson"]) ||
		c.Labels[kube.LabelCopiedFrom] != src {
		t.Errorf("copy: type %s, labels %v, data equal %v", c.Type, c.Labels, string(c.Data[".dockerconfigjson"]) == string(secret.Data[".dockerconfigjson"]))
	}
	if dep, err := kc.AppsV1().Deployments(e.NS(n)).Get(ctx, "preview", metav1.GetOptions{}); err != nil ||
		len(dep.Spec.Template.Spec.ImagePullSecrets) != 1 || dep.Spec.Template.Spec.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("the preview's pods do not pull with the copied Secret: %v", err)
	}
	rev := e.Row(d, n).DeployedFingerprint

	// The source is rotated: the next cycle copies it again.
	secret.Data[".dockerconfigjson"] = []byte(`{"auths":{"r.example.com":{"auth":"c2VjcmV0LXR3bw=="}}}`)
	if _, err := kc.CoreV1().Secrets(src).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	if got := string(copied().Data[".dockerconfigjson"]); got != string(secret.Data[".dockerconfigjson"]) {
		t.Errorf("after the source changed, the copy still holds the old value")
	}
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedFingerprint == rev {
		t.Errorf("after the source changed: %s, fingerprint %s (was %s)", p.Status, p.DeployedFingerprint, rev)
	}
	// Unchanged: nothing more to do.
	if res, err := d.Loop.Plan(ctx); err != nil || len(res.Actions) != 0 {
		t.Errorf("plan with the copy up to date: %v %v", res.Actions, err)
	}
	for _, cm := range e.GH.Comments(e.Repo, n) {
		if strings.Contains(cm.Body, "c2VjcmV0") {
			t.Errorf("a comment carries the Secret's value:\n%s", cm.Body)
		}
	}
}

// TestUpgradeFromSecretRecords: a preview deployed by a previewd that kept
// Helm's records in Secrets (here: its records are not in PostgreSQL) is
// installed once more by this one, adopting the running objects, and is
// Ready again at the same SHA.
func TestUpgradeFromSecretRecords(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	sha := e2e.SHA("upgrade-1")
	n := e.Open("Upgrade", "upgrade", sha)
	e.MustRunOnce(d)
	ctx := context.Background()
	dep, err := e.Kube.Client.AppsV1().Deployments(e.NS(n)).Get(ctx, "preview", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := releaseStore(t, e).Purge(ctx, e.NS(n)); err != nil {
		t.Fatal(err)
	}
	e.MustRunOnce(d)
	rel, err := e.Release(n)
	if err != nil || !rel.Exists || rel.Status != "deployed" || rel.SHA != sha || rel.Revision != 1 {
		t.Fatalf("release after the upgrade: %+v %v", rel, err)
	}
	after, err := e.Kube.Client.AppsV1().Deployments(e.NS(n)).Get(ctx, "preview", metav1.GetOptions{})
	if err != nil || after.UID != dep.UID {
		t.Errorf("the Deployment was replaced instead of adopted: %v", err)
	}
	if p := e.Row(d, n); p.Status != model.StatusReady || p.DeployedSHA != sha {
		t.Errorf("preview after the upgrade: %s %s", p.Status, p.LastError)
	}
}
