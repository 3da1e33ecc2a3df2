package chartcheck_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/previewd/previewd/internal/harness/chartcheck"
	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/internal/wire"
	"github.com/previewd/previewd/reconcile/model"
)

// roleUnderTest is one of the chart's ClusterRoles: previewd's own (bound
// cluster-wide) or its preview role (bound by previewd in each namespace it
// owns; probed in probeNS, where the test binds it).
type roleUnderTest struct {
	name    string
	rules   []rbacv1.PolicyRule
	probeNS string
	// namespace is a Role's ("" for a ClusterRole).
	namespace string
}

// TestLeastPrivilege runs previewd's own code under the chart's RBAC and
// admission policy, with a ServiceAccount's bearer token as the only
// credential: a full lifecycle (opened → Ready, push → upgraded, closed →
// namespace gone) and a failing preview (the CrashLoopBackOff reason found,
// no "forbidden" in what reaches the PR) must succeed; the token must be
// refused everything outside the namespaces previewd owns (confined). Then
// each rule of each role alone is removed and the same scenarios must fail.
func TestLeastPrivilege(t *testing.T) {
	c := testbed.Kube(t)
	ctx := context.Background()
	ns := testbed.Namespace(t, c)
	// Names unique per run (cluster-scoped objects on a possibly shared
	// control plane): the release name makes the chart's names.
	id := e2e.SHA(fmt.Sprint(time.Now().UnixNano()))[:6]
	release := "previewd-lp-" + id
	lpInstance = "lp-" + id
	// A namespace holding a Secret the previews get a copy of
	// (copy_secrets), and one they must not.
	lpSecretsFrom = testbed.Namespace(t, c)
	for _, name := range []string{"lp-shared", "lp-other"} {
		if _, err := c.Client.CoreV1().Secrets(lpSecretsFrom).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name},
			Data: map[string][]byte{"token": []byte("s3cr3t-" + name)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	objs := render(t, map[string]any{"config": map[string]any{"instance": lpInstance},
		"rbac": map[string]any{"copySecrets": []any{map[string]any{"namespace": lpSecretsFrom, "names": []any{"lp-shared"}}}}},
		chartcheck.RenderOptions{Release: release, Namespace: ns})
	t.Cleanup(func() {
		// The scenarios' namespaces (the failing preview's is left).
		nss, _ := c.Client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{LabelSelector: "previewd.dev/instance=" + lpInstance})
		for _, n := range nss.Items {
			_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), n.Name, metav1.DeleteOptions{})
		}
	})
	var own, preview, copier roleUnderTest
	var sa corev1.ServiceAccount
	for _, o := range objs {
		var err error
		switch o.GetKind() {
		case "ServiceAccount":
			err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &sa)
			if err == nil {
				_, err = c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa.Name}}, metav1.CreateOptions{})
			}
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				break
			}
			if strings.HasSuffix(r.Name, "-preview") {
				preview = roleUnderTest{name: r.Name, rules: r.Rules}
			} else {
				own = roleUnderTest{name: r.Name, rules: r.Rules, probeNS: "pr-probe"}
			}
			err = createCleanup(t, c.Client.RbacV1().ClusterRoles(), &r)
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err == nil {
				err = createCleanup(t, c.Client.RbacV1().ClusterRoleBindings(), &b)
			}
		case "Role":
			var r rbacv1.Role
			if err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
				break
			}
			copier = roleUnderTest{name: r.Name, rules: r.Rules, probeNS: r.Namespace, namespace: r.Namespace}
			err = createCleanup(t, c.Client.RbacV1().Roles(r.Namespace), &r)
		case "RoleBinding":
			var b rbacv1.RoleBinding
			if err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err == nil {
				err = createCleanup(t, c.Client.RbacV1().RoleBindings(b.Namespace), &b)
			}
		case "ValidatingAdmissionPolicy":
			var p admv1.ValidatingAdmissionPolicy
			if err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err == nil {
				err = createCleanup(t, c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies(), &p)
			}
		case "ValidatingAdmissionPolicyBinding":
			var b admv1.ValidatingAdmissionPolicyBinding
			if err = runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err == nil {
				err = createCleanup(t, c.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings(), &b)
			}
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	if len(own.rules) == 0 || len(preview.rules) == 0 || len(copier.rules) == 0 || sa.Name == "" {
		t.Fatalf("the chart must render previewd's ClusterRole, its preview role, the copy_secrets Role and a ServiceAccount: own %d rules, preview %d, copy %d, SA %q",
			len(own.rules), len(preview.rules), len(copier.rules), sa.Name)
	}
	lpRole = preview.name
	user := "system:serviceaccount:" + ns + ":" + sa.Name
	// The preview role's rules are probed in a namespace where the test
	// binds it (as previewd does in each of its own).
	preview.probeNS = testbed.Namespace(t, c)
	if _, err := c.Client.RbacV1().RoleBindings(preview.probeNS).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: preview.name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeTokenKubeconfig(t, c.RESTConfig, tr.Status.Token)

	// The identity is what we think: a bearer token, no client certificate,
	// and not an administrator.
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if rc.CertData != nil || rc.CertFile != "" || rc.BearerToken == "" {
		t.Fatal("the test kubeconfig must carry only a bearer token")
	}
	saClient := kubernetes.NewForConfigOrDie(rc)
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := review.Status.UserInfo.Username; got != user {
		t.Fatalf("token authenticates as %q, want %q", got, user)
	}
	if _, err := saClient.RbacV1().ClusterRoles().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing ClusterRoles as %s: %v, want forbidden", user, err)
	}
	waitPolicy(t, saClient)

	t.Run("all-rules", func(t *testing.T) {
		if err := scenarios(t, kubeconfig); err != nil {
			t.Fatalf("previewd fails with the chart's RBAC and policy: %v", err)
		}
	})
	t.Run("confined", func(t *testing.T) { confined(t, c, saClient, sa.Name, ns, preview.name) })
	if t.Failed() {
		return
	}
	for _, role := range []roleUnderTest{own, preview, copier} {
		rules := role.rules
		for i, rule := range rules {
			t.Run(fmt.Sprintf("without-%s-%d-%s", cmpOr(strings.TrimPrefix(role.name[len(release):], "-"), "own"), i, ruleName(rule)), func(t *testing.T) {
				less := append(append([]rbacv1.PolicyRule{}, rules[:i]...), rules[i+1:]...)
				err := withoutAccess(t, c.Client, role, user, less, rule, kubeconfig)
				if err == nil {
					t.Errorf("rule %d (%s) of %s is not needed: previewd passed every scenario without it; drop it from the chart", i, ruleName(rule), role.name)
					return
				}
				t.Logf("RULE %s: without it: %v", ruleName(rule), err)
			})
		}
	}
	// Verb by verb (about 5 minutes more): PREVIEWD_TEST_RBAC_VERBS=1.
	if os.Getenv("PREVIEWD_TEST_RBAC_VERBS") == "" {
		return
	}
	for _, role := range []roleUnderTest{own, preview, copier} {
		rules := role.rules
		for i, rule := range rules {
			if len(rule.Verbs) < 2 {
				continue // the rule test above covered it
			}
			for j, verb := range rule.Verbs {
				key := ruleName(rule) + ":" + verb
				t.Run("without-verb-"+key, func(t *testing.T) {
					less := append([]rbacv1.PolicyRule{}, rules...)
					r := *rule.DeepCopy()
					r.Verbs = append(append([]string{}, rule.Verbs[:j]...), rule.Verbs[j+1:]...)
					less[i] = r
					probe := rule
					probe.Verbs = []string{verb}
					err := withoutAccess(t, c.Client, role, user, less, probe, kubeconfig)
					if err == nil {
						if why, ok := verbsOnly[key]; ok {
							t.Logf("VERB %s: not exercised by the scenarios, kept: %s", key, why)
							return
						}
						t.Errorf("VERB %s is not needed: previewd passed every scenario without it", key)
						return
					}
					t.Logf("VERB %s: without it: %v", key, err)
				})
			}
		}
	}
}

// lpInstance and lpRole are the instance label the chart's policy was
// rendered for and the preview role previewd binds: the scenarios'
// previewd runs with them.
var lpInstance, lpRole, lpSecretsFrom string

// createCleanup creates a cluster-scoped object and deletes it at the end
// of the test.
func createCleanup[T any](t *testing.T, c interface {
	Create(context.Context, *T, metav1.CreateOptions) (*T, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
}, obj *T) error {
	name := any(obj).(metav1.Object).GetName()
	if _, err := c.Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
		return err
	}
	t.Cleanup(func() { _ = c.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	return nil
}

// waitPolicy waits until the admission policy refuses the ServiceAccount a
// namespace without previewd's labels (the API server loads policies
// asynchronously); one created before that is deleted.
func waitPolicy(t *testing.T, sa kubernetes.Interface) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ns, err := sa.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "lp-unlabelled-"}}, metav1.CreateOptions{})
		if err == nil {
			_ = testbed.Kube(t).Client.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the admission policy is not enforced after 30s: creating an unlabelled namespace as previewd: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// confined: previewd's token, with the chart's RBAC and policy, can read
// no Secret and write nothing outside the namespaces it owns, cannot take
// a namespace over by labelling it, and cannot bind itself more.
func confined(t *testing.T, c *testbed.Cluster, sa kubernetes.Interface, saName, saNS, previewRole string) {
	ctx := context.Background()
	foreign := testbed.Namespace(t, c)
	owned := map[string]string{"app.kubernetes.io/managed-by": "previewd", "previewd.dev/instance": lpInstance}
	refused := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("%s as previewd: %v, want refused", what, err)
			return
		}
		t.Logf("refused: %s: %s", what, oneLine(err.Error()))
	}
	for _, ns := range []string{"kube-system", foreign, ""} {
		_, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		refused("listing Secrets in "+cmpOr(ns, "all namespaces"), err)
	}
	_, err := sa.CoreV1().Secrets("kube-system").Get(ctx, "any", metav1.GetOptions{})
	refused("getting a Secret in kube-system", err)
	_, err = sa.CoreV1().Secrets(lpSecretsFrom).Get(ctx, "lp-other", metav1.GetOptions{})
	refused("getting a Secret of the copy_secrets namespace that is not named there", err)
	_, err = sa.CoreV1().Secrets(lpSecretsFrom).List(ctx, metav1.ListOptions{})
	refused("listing the Secrets of the copy_secrets namespace", err)
	for _, ns := range []string{"kube-system", foreign} {
		_, err = sa.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		refused("creating a ConfigMap in "+ns, err)
		_, err = sa.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
		refused("creating a Deployment in "+ns, err)
		_, err = sa.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: previewRole},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNS}}}, metav1.CreateOptions{})
		refused("binding its preview role in "+ns, err)
		err = sa.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
		refused("deleting namespace "+ns, err)
		_, err = sa.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":"previewd","previewd.dev/instance":"`+lpInstance+`"}}}`), metav1.PatchOptions{})
		refused("patching namespace "+ns+" to carry previewd's labels", err)
		_, err = sa.CoreV1().ConfigMaps(ns).Patch(ctx, "kube-root-ca.crt", types.MergePatchType, []byte(`{"data":{"x":"y"}}`), metav1.PatchOptions{})
		refused("patching a ConfigMap in "+ns, err)
		err = sa.CoreV1().ConfigMaps(ns).Delete(ctx, "kube-root-ca.crt", metav1.DeleteOptions{})
		refused("deleting a ConfigMap in "+ns, err)
		_, err = sa.AppsV1().Deployments(ns).Patch(ctx, "x", types.ApplyPatchType, []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"x"}}`),
			metav1.PatchOptions{FieldManager: "previewd"})
		refused("server-side applying a Deployment in "+ns, err)
		live, gerr := sa.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if gerr != nil {
			t.Fatal(gerr)
		}
		if live.Labels == nil {
			live.Labels = map[string]string{}
		}
		maps.Copy(live.Labels, owned)
		_, err = sa.CoreV1().Namespaces().Update(ctx, live, metav1.UpdateOptions{})
		refused("labelling namespace "+ns+" as previewd's", err)
	}
	_, err = sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "lp-unlabelled-"}}, metav1.CreateOptions{})
	refused("creating a namespace without its labels", err)
	_, err = sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "lp-x"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: previewRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNS}}}, metav1.CreateOptions{})
	refused("binding its preview role cluster-wide", err)

	// In a namespace of its own: it may bind its preview role to itself,
	// nothing more, and may not drop the labels that make it its own.
	withLabels := func(extra map[string]string) map[string]string {
		m := maps.Clone(owned)
		maps.Copy(m, extra)
		return m
	}
	restricted := map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}
	for _, c := range []struct {
		what, name string
		labels     map[string]string
	}{
		{"a namespace of its own that allows privileged pods", "pr-lp-privileged-", withLabels(map[string]string{"pod-security.kubernetes.io/enforce": "privileged"})},
		{"a namespace of its own without Pod Security", "pr-lp-nopsa-", owned},
		{"a namespace of its own not named pr-…", "vault-lp-", withLabels(restricted)},
		{"a namespace of its own with another tenant's label", "pr-lp-team-", withLabels(map[string]string{"team": "payments", "pod-security.kubernetes.io/enforce": "restricted"})},
	} {
		_, err = sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: c.name, Labels: c.labels}}, metav1.CreateOptions{})
		refused("creating "+c.what, err)
	}
	mine, err := sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "pr-lp-owned-", Labels: withLabels(restricted)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a namespace with its labels: %v", err)
	}
	privileged := mine.DeepCopy()
	privileged.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
	_, err = sa.CoreV1().Namespaces().Update(ctx, privileged, metav1.UpdateOptions{})
	refused("letting its own namespace run privileged pods", err)
	// With its preview role bound there (as previewd does), its only
	// NetworkPolicy is the fence, which never opens the metadata address.
	if _, err := sa.RbacV1().RoleBindings(mine.Name).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "previewd"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: previewRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNS}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("binding its preview role in its own namespace: %v", err)
	}
	waitAccess(t, c.Client, "system:serviceaccount:"+saNS+":"+saName, mine.Name,
		rbacv1.PolicyRule{Verbs: []string{"create"}, APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}}, true)
	egress := func(name, except string) *networkingv1.NetworkPolicy {
		block := &networkingv1.IPBlock{CIDR: "0.0.0.0/0"}
		if except != "" {
			block.Except = []string{except}
		}
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{IPBlock: block}}}}}}
	}
	_, err = sa.NetworkingV1().NetworkPolicies(mine.Name).Create(ctx, egress("allow-all", "169.254.169.254/32"), metav1.CreateOptions{})
	refused("adding a NetworkPolicy of its own beside the fence", err)
	_, err = sa.NetworkingV1().NetworkPolicies(mine.Name).Create(ctx, egress("previewd-fence", ""), metav1.CreateOptions{})
	refused("a fence that lets the previews reach the cloud metadata address", err)
	open := egress("previewd-fence", "")
	open.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
	_, err = sa.NetworkingV1().NetworkPolicies(mine.Name).Create(ctx, open, metav1.CreateOptions{})
	refused("a fence with an egress rule to anywhere", err)
	if _, err := sa.NetworkingV1().NetworkPolicies(mine.Name).Create(ctx, egress("previewd-fence", "169.254.169.254/32"), metav1.CreateOptions{}); err != nil {
		t.Errorf("the fence itself, the metadata address excepted: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), mine.Name, metav1.DeleteOptions{})
	})
	for _, role := range []string{"cluster-admin", "admin", "edit"} {
		_, err = sa.RbacV1().RoleBindings(mine.Name).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x-" + role},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: saName, Namespace: saNS}}}, metav1.CreateOptions{})
		refused("binding "+role+" in its own namespace", err)
	}
	_, err = sa.RbacV1().RoleBindings(mine.Name).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x-other"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: previewRole},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: "kube-system"}}}, metav1.CreateOptions{})
	refused("binding its preview role to another ServiceAccount", err)
	mine.Labels = map[string]string{"team": "x"}
	_, err = sa.CoreV1().Namespaces().Update(ctx, mine, metav1.UpdateOptions{})
	refused("dropping its labels from its own namespace", err)
	if err := sa.CoreV1().Namespaces().Delete(ctx, mine.Name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("deleting its own namespace: %v", err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// withoutAccess runs the scenarios with role's rules reduced to less (once
// the API server denies probe to user), then restores them (and waits
// until probe is allowed again).
func withoutAccess(t *testing.T, client kubernetes.Interface, role roleUnderTest, user string, less []rbacv1.PolicyRule, probe rbacv1.PolicyRule, kubeconfig string) error {
	t.Helper()
	setRules(t, client, role, less)
	waitAccess(t, client, user, role.probeNS, probe, false)
	defer func() {
		setRules(t, client, role, role.rules)
		waitAccess(t, client, user, role.probeNS, probe, true)
	}()
	return scenarios(t, kubeconfig)
}

// verbsOnly lists the verbs whose removal the scenarios cannot detect
// because the code path that needs them does not run in them; each is
// kept for the reason given (docs/rbac.md).
var verbsOnly = map[string]string{
	"core/namespaces:update": "Pod Security labels of a namespace created before the fence, and a renamed repository's namespace moved " +
		"(internal/wire TestPreviewFence, TestRenamedRepository); the scenarios' namespaces are created with their labels",
	"rbac.authorization.k8s.io/rolebindings:delete": "replaces a RoleBinding left bound to another role or identity " +
		"(kube TestEnsureAccessReplacesAnOutdatedBinding)",
}

func ruleName(r rbacv1.PolicyRule) string {
	g := strings.Join(r.APIGroups, ",")
	if g == "" {
		g = "core"
	}
	return g + "/" + strings.Join(r.Resources, ",")
}

func setRules(t *testing.T, client kubernetes.Interface, role roleUnderTest, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	if role.namespace != "" {
		r, err := client.RbacV1().Roles(role.namespace).Get(ctx, role.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		r.Rules = rules
		if _, err := client.RbacV1().Roles(role.namespace).Update(ctx, r, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	cr, err := client.RbacV1().ClusterRoles().Get(ctx, role.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cr.Rules = rules
	if _, err := client.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitAccess waits until the authorizer's view of the first verb of rule
// for user is allowed (the RBAC authorizer reads from an informer cache).
func waitAccess(t *testing.T, client kubernetes.Interface, user, namespace string, rule rbacv1.PolicyRule, allowed bool) {
	t.Helper()
	res, sub, _ := strings.Cut(rule.Resources[0], "/")
	name := ""
	if len(rule.ResourceNames) > 0 {
		name = rule.ResourceNames[0]
	}
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:authenticated"},
		ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: rule.Verbs[0], Group: rule.APIGroups[0], Resource: res, Subresource: sub, Namespace: namespace, Name: name,
		},
	}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := client.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed == allowed {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("access to %s/%s for %s did not become allowed=%v: %v", rule.Verbs[0], rule.Resources[0], user, allowed, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeTokenKubeconfig writes a kubeconfig with the API server's address and
// CA and the token as the only credential.
func writeTokenKubeconfig(t *testing.T, admin *rest.Config, token string) string {
	t.Helper()
	ca := admin.CAData
	if len(ca) == 0 && admin.CAFile != "" {
		var err error
		if ca, err = os.ReadFile(admin.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testbed"] = &clientcmdapi.Cluster{Server: admin.Host, CertificateAuthorityData: ca, TLSServerName: admin.ServerName}
	cfg.AuthInfos["previewd"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["previewd"] = &clientcmdapi.Context{Cluster: "testbed", AuthInfo: "previewd"}
	cfg.CurrentContext = "previewd"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// scenarios runs the lifecycle and the failure diagnosis, each in a fresh
// e2e environment whose previewd talks to the cluster through kubeconfig.
func scenarios(t *testing.T, kubeconfig string) error {
	if err := lifecycle(t, kubeconfig); err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	if err := diagnosis(t, kubeconfig); err != nil {
		return fmt.Errorf("failure diagnosis: %w", err)
	}
	return nil
}

// env builds an e2e environment whose config points at kubeconfig, gives up
// on a deploy after one 15 s attempt, and wires previewd's daemon.
func newEnv(t *testing.T, image, kubeconfig string) (*e2e.Env, *wire.Daemon, error) {
	e := e2e.New(t, image)
	raw, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	for old, repl := range map[string]string{
		fmt.Sprintf("kubeconfig: %q", e.Kube.Kubeconfig): fmt.Sprintf("kubeconfig: %q", kubeconfig),
		"deploy_timeout: 60s":                            "deploy_timeout: 15s\nmax_attempts: 1",
		"kubernetes:\n":                                  "kubernetes:\n  preview_role: " + lpRole + "\n",
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("e2e config lacks %q:\n%s", old, text)
		}
		text = strings.Replace(text, old, repl, 1)
	}
	// The instance the chart's policy was rendered for, and the Secret
	// the chart lets previewd copy.
	text = regexp.MustCompile(`(?m)^instance: .*$`).ReplaceAllString(text, "instance: "+lpInstance)
	text += "    copy_secrets: {from: " + lpSecretsFrom + ", names: [lp-shared]}\n"
	if err := os.WriteFile(e.ConfigPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	e.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})) // quiet
	if testing.Verbose() && os.Getenv("PREVIEWD_TEST_LOG") != "" {
		e.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	zero := time.Duration(0)
	d, err := wire.Build(context.Background(), e.Config(), wire.Options{Log: e.Log,
		Backoff: func(int) time.Duration { return 200 * time.Millisecond }, MutationSpacing: &zero})
	if err != nil {
		return e, nil, fmt.Errorf("wire.Build: %w", err)
	}
	t.Cleanup(d.Close)
	return e, d, nil
}

func lifecycle(t *testing.T, kubeconfig string) error {
	e, d, err := newEnv(t, "", kubeconfig)
	if err != nil {
		return err
	}
	sha1, sha2 := e2e.SHA("one"), e2e.SHA("two")
	n := e.Open("Add checkout", "feature/checkout", sha1)
	if err := ready(e, d, n, sha1); err != nil {
		return fmt.Errorf("PR opened: %w", err)
	}
	// /readyz: a cycle succeeded, PostgreSQL and the API server's /readyz
	// answer (the latter under this identity).
	if err := d.Ready(context.Background()); err != nil {
		return fmt.Errorf("daemon not ready: %w", err)
	}
	// The Secret named in copy_secrets is there, with the source's data.
	copied, err := e.Kube.Client.CoreV1().Secrets(e.NS(n)).Get(context.Background(), "lp-shared", metav1.GetOptions{})
	if err != nil || string(copied.Data["token"]) != "s3cr3t-lp-shared" {
		return fmt.Errorf("copy_secrets: lp-shared in %s: %v", e.NS(n), err)
	}
	// Each cycle observes the previews' workloads (one list across
	// namespaces): a Ready preview that breaks is noticed.
	obs, err := d.Loop.Observe(context.Background())
	if err != nil {
		return fmt.Errorf("observing: %w", err)
	}
	if _, ok := obs.Cluster.Workloads[e.NS(n)]; !ok {
		return fmt.Errorf("the cycle did not observe the workloads of %s (a preview that breaks would go unnoticed; see previewd's log)", e.NS(n))
	}
	if err := e.GH.Push(e.Repo, n, sha2); err != nil {
		t.Fatal(err)
	}
	if err := ready(e, d, n, sha2); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	if err := e.GH.ClosePR(e.Repo, n); err != nil {
		t.Fatal(err)
	}
	if err := e.RunOnce(d); err != nil {
		return fmt.Errorf("PR closed: cycle: %w", err)
	}
	_, err = e.Kube.Client.CoreV1().Namespaces().Get(context.Background(), e.NS(n), metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("PR closed: namespace %s still there (%v)", e.NS(n), err)
	}
	return nil
}

// ready runs one cycle and checks that PR n runs sha and is recorded Ready.
func ready(e *e2e.Env, d *wire.Daemon, n int, sha string) error {
	if err := e.RunOnce(d); err != nil {
		return fmt.Errorf("cycle: %w", err)
	}
	p, ok, err := d.Store.Get(context.Background(), model.Key{Repo: e.Repo, Number: n})
	if err != nil || !ok {
		return fmt.Errorf("no preview row (%v)", err)
	}
	if p.Status != model.StatusReady || p.DeployedSHA != sha {
		return fmt.Errorf("preview %s at %.7s, want ready at %.7s: %s", p.Status, p.DeployedSHA, sha, p.LastError)
	}
	ds, err := e.Kube.Client.AppsV1().Deployments(e.NS(n)).List(context.Background(), metav1.ListOptions{})
	if err != nil || len(ds.Items) != 1 {
		return fmt.Errorf("deployments in %s: %v (%d)", e.NS(n), err, len(ds.Items))
	}
	if img := ds.Items[0].Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+sha) {
		return fmt.Errorf("deployment runs %s, want tag %s", img, sha)
	}
	return nil
}

// diagnosis: a crash-looping preview is reported with its reason, and
// nothing previewd reports says "forbidden".
func diagnosis(t *testing.T, kubeconfig string) error {
	e, d, err := newEnv(t, testbed.FailCrashLoop, kubeconfig)
	if err != nil {
		return err
	}
	n := e.Open("Broken", "broken", e2e.SHA("broken"))
	if err := e.RunOnce(d); err != nil {
		return fmt.Errorf("cycle: %w", err)
	}
	p, ok, err := d.Store.Get(context.Background(), model.Key{Repo: e.Repo, Number: n})
	if err != nil || !ok {
		return fmt.Errorf("no preview row (%v)", err)
	}
	t.Logf("diagnosis: preview %s: %s", p.Status, oneLine(p.LastError))
	var text strings.Builder
	text.WriteString(p.LastError)
	for _, c := range e.BotComments(n) {
		text.WriteString("\n" + c.Body)
	}
	switch {
	case p.Status != model.StatusFailed || !strings.Contains(p.LastError, "CrashLoopBackOff"):
		return fmt.Errorf("preview %s, want failed with CrashLoopBackOff: %s", p.Status, oneLine(p.LastError))
	case strings.Contains(strings.ToLower(text.String()), "forbidden"):
		return errors.New("the report says forbidden: " + oneLine(forbiddenLine(text.String())))
	}
	// The log read must reach the node. kwok runs no containers and its
	// kubelet answers 404, so in the test bed "the server could not find
	// the requested resource" is the sign that the API server authorized
	// and forwarded the request; a real cluster returns the lines.
	_, logs, found := strings.Cut(p.LastError, "\n--- logs ---\n")
	if !found {
		return errors.New("no logs section in the report: " + oneLine(p.LastError))
	}
	if strings.HasPrefix(logs, "logs unavailable: ") && !strings.Contains(logs, "could not find the requested resource") {
		return errors.New("the log read did not reach the node: " + oneLine(logs))
	}
	return nil
}

func forbiddenLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(strings.ToLower(l), "forbidden") {
			return l
		}
	}
	return s
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}
