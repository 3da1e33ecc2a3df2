package chartcheck_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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

// TestLeastPrivilege runs previewd's own code under the chart's ClusterRole,
// bound to a ServiceAccount whose bearer token is the only credential: a
// full lifecycle (opened → Ready, push → upgraded, closed → namespace gone)
// and a failing preview (the CrashLoopBackOff reason found, no "forbidden"
// in what reaches the PR) must succeed. Then each rule alone is removed and
// the same scenarios must fail.
func TestLeastPrivilege(t *testing.T) {
	c := testbed.Kube(t)
	ctx := context.Background()
	ns := testbed.Namespace(t, c)
	objs := render(t, nil, chartcheck.RenderOptions{Release: "previewd", Namespace: ns})
	var role rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(chartcheck.Find(objs, "ClusterRole").Object, &role); err != nil {
		t.Fatal(err)
	}
	rules := role.Rules
	if len(rules) == 0 {
		t.Fatal("the chart's ClusterRole has no rules")
	}

	// Identity: ServiceAccount + ClusterRole + binding, names unique per run
	// (cluster-scoped objects on a possibly shared control plane).
	name := "previewd-lp-" + e2e.SHA(fmt.Sprint(time.Now().UnixNano()))[:6]
	sa, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "previewd"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roles := c.Client.RbacV1().ClusterRoles()
	if _, err := roles.Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = roles.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa.Name, Namespace: ns}},
	}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeTokenKubeconfig(t, c.RESTConfig, tr.Status.Token)
	user := "system:serviceaccount:" + ns + ":" + sa.Name

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

	t.Run("all-rules", func(t *testing.T) {
		if err := scenarios(t, kubeconfig); err != nil {
			t.Fatalf("previewd fails with the chart's ClusterRole: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	for i, rule := range rules {
		t.Run(fmt.Sprintf("without-%d-%s", i, ruleName(rule)), func(t *testing.T) {
			less := append(append([]rbacv1.PolicyRule{}, rules[:i]...), rules[i+1:]...)
			err := withoutAccess(t, c.Client, name, user, rules, less, rule, kubeconfig)
			if err == nil {
				t.Errorf("rule %d (%s) is not needed: previewd passed every scenario without it; drop it from the chart", i, ruleName(rule))
				return
			}
			t.Logf("RULE %s: without it: %v", ruleName(rule), err)
		})
	}
	// Verb by verb (about 5 minutes more): PREVIEWD_TEST_RBAC_VERBS=1.
	if os.Getenv("PREVIEWD_TEST_RBAC_VERBS") == "" {
		return
	}
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
				err := withoutAccess(t, c.Client, name, user, rules, less, probe, kubeconfig)
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

// withoutAccess runs the scenarios with the ClusterRole's rules reduced to
// less (once the API server denies probe to user), then restores rules
// (and waits until probe is allowed again).
func withoutAccess(t *testing.T, client kubernetes.Interface, name, user string, rules, less []rbacv1.PolicyRule, probe rbacv1.PolicyRule, kubeconfig string) error {
	t.Helper()
	setRules(t, client, name, less)
	waitAccess(t, client, user, probe, false)
	defer func() {
		setRules(t, client, name, rules)
		waitAccess(t, client, user, probe, true)
	}()
	return scenarios(t, kubeconfig)
}

// verbsOnly lists the verbs whose removal the scenarios cannot detect
// because the code path that needs them does not run in them; each is
// kept for the reason given (docs/rbac.md).
var verbsOnly = map[string]string{}

func ruleName(r rbacv1.PolicyRule) string {
	g := strings.Join(r.APIGroups, ",")
	if g == "" {
		g = "core"
	}
	return g + "/" + strings.Join(r.Resources, ",")
}

func setRules(t *testing.T, client kubernetes.Interface, name string, rules []rbacv1.PolicyRule) {
	t.Helper()
	ctx := context.Background()
	cr, err := client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
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
func waitAccess(t *testing.T, client kubernetes.Interface, user string, rule rbacv1.PolicyRule, allowed bool) {
	t.Helper()
	res, sub, _ := strings.Cut(rule.Resources[0], "/")
	sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User:   user,
		Groups: []string{"system:serviceaccounts", "system:authenticated"},
		ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: rule.Verbs[0], Group: rule.APIGroups[0], Resource: res, Subresource: sub, Namespace: "pr-probe",
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
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("e2e config lacks %q:\n%s", old, text)
		}
		text = strings.Replace(text, old, repl, 1)
	}
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
