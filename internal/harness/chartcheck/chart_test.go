package chartcheck_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/harness/e2e"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/harness/chartcheck"
	"github.com/previewd/previewd/internal/harness/testbed"
)

func TestMain(m *testing.M) { e2e.Main(m) }

const monitoringV1 = "monitoring.coreos.com/v1"

func fullValues(t *testing.T) map[string]any {
	t.Helper()
	v, err := chartcheck.ReadValues(filepath.Join(chartcheck.ChartDir(), "ci", "full-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAlertRulesInSync: the chart ships deploy/alerts/previewd-rules.yaml
// unchanged (Helm cannot read files outside the chart).
func TestAlertRulesInSync(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(chartcheck.RepoRoot(), "deploy", "alerts", "previewd-rules.yaml"))
	if err != nil {
		t.Skipf("no deploy/alerts/previewd-rules.yaml: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(chartcheck.ChartDir(), "files", "previewd-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatal("charts/previewd/files/previewd-rules.yaml differs from deploy/alerts/previewd-rules.yaml: cp deploy/alerts/previewd-rules.yaml charts/previewd/files/")
	}
}

func TestLint(t *testing.T) {
	for name, vals := range map[string]map[string]any{"default": nil, "full": fullValues(t)} {
		if err := chartcheck.Lint(chartcheck.ChartDir(), vals); err != nil {
			t.Errorf("%s values: %v", name, err)
		}
	}
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind())
	}
	return out
}

func render(t *testing.T, vals map[string]any, o chartcheck.RenderOptions) []*unstructured.Unstructured {
	t.Helper()
	objs, err := chartcheck.Render(context.Background(), chartcheck.ChartDir(), vals, o)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return objs
}

// TestRenderDefault: the default values give the daemon, its identity and
// its config, no monitoring objects and no Secret.
func TestRenderDefault(t *testing.T) {
	objs := render(t, nil, chartcheck.RenderOptions{APIVersions: []string{monitoringV1}})
	got := strings.Join(kinds(objs), ",")
	want := "ServiceAccount,ConfigMap,ClusterRole,ClusterRole,ClusterRoleBinding,Service,Deployment,ValidatingAdmissionPolicy,ValidatingAdmissionPolicyBinding"
	if got != want {
		t.Fatalf("kinds = %s, want %s", got, want)
	}
	checkDeployment(t, objs, false)
	cfg := parseConfig(t, objs)
	if cfg.GitHub.TokenEnv != "GITHUB_TOKEN" || cfg.Listen != ":9090" || len(cfg.Repositories) != 0 {
		t.Errorf("config = %+v", cfg)
	}
}

// TestRenderFull: every option on; monitoring objects only when the cluster
// serves monitoring.coreos.com/v1.
func TestRenderFull(t *testing.T) {
	vals := fullValues(t)
	without := render(t, vals, chartcheck.RenderOptions{})
	if chartcheck.Find(without, "ServiceMonitor") != nil || chartcheck.Find(without, "PrometheusRule") != nil {
		t.Errorf("monitoring objects rendered without the API: %v", kinds(without))
	}
	objs := render(t, vals, chartcheck.RenderOptions{APIVersions: []string{monitoringV1}})
	for _, k := range []string{"ServiceMonitor", "PrometheusRule"} {
		if chartcheck.Find(objs, k) == nil {
			t.Errorf("no %s with the API present: %v", k, kinds(objs))
		}
	}
	checkDeployment(t, objs, true)
	pr := chartcheck.Find(objs, "PrometheusRule")
	if groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups"); len(groups) != 1 || !strings.Contains(fmt.Sprint(groups), "PreviewdDeployStuck") {
		t.Errorf("PrometheusRule groups = %v", groups)
	}
	cfg := parseConfig(t, objs)
	if cfg.GitHub.App == nil || cfg.GitHub.App.AppID != 12345 || cfg.GitHub.APIURL != "https://ghe.example.com/api/v3/" {
		t.Errorf("github config = %+v", cfg.GitHub)
	}
	if len(cfg.Repositories) != 2 || !strings.HasSuffix(cfg.Repositories[0].Chart, filepath.Join("charts", "preview-app")) ||
		cfg.Repositories[0].Host != "{{ .Namespace }}.preview.example.com" || !cfg.Repositories[0].SkipDrafts {
		t.Errorf("repositories = %+v", cfg.Repositories)
	}
	if cfg.Instance != "staging" || cfg.MaxAttempts != 4 || cfg.DeployTimeout != 5*time.Minute {
		t.Errorf("config = %+v", cfg)
	}
	var preview *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && strings.HasSuffix(o.GetName(), "-preview") {
			preview = o
		}
	}
	if preview == nil {
		t.Fatal("no preview role")
	}
	rules, _, _ := unstructured.NestedSlice(preview.Object, "rules")
	if last := fmt.Sprint(rules[len(rules)-1]); !strings.Contains(last, "configmaps") {
		t.Errorf("extraRules not appended to the preview role: %s", last)
	}
	if cfg.Kubernetes.PreviewRole != preview.GetName() {
		t.Errorf("kubernetes.preview_role = %q, want the preview role %q", cfg.Kubernetes.PreviewRole, preview.GetName())
	}
}

// checkDeployment: hardened pod, probes on the metrics port, secrets only by
// reference.
func checkDeployment(t *testing.T, objs []*unstructured.Unstructured, app bool) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Secret" {
			t.Errorf("the chart renders a Secret %s: secrets must come from existing Secrets", o.GetName())
		}
	}
	d := chartcheck.Find(objs, "Deployment")
	if d == nil {
		t.Fatal("no Deployment")
	}
	if r, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(r) != "1" {
		t.Errorf("replicas = %v", r)
	}
	spec, _, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	// SIGTERM lets a running Helm operation finish (up to the Helm
	// timeout) and the executor record it: a SIGKILL at the end of the
	// grace must not land in the middle of one.
	g, _, _ := unstructured.NestedFieldNoCopy(spec, "terminationGracePeriodSeconds")
	grace, _ := strconv.ParseFloat(fmt.Sprint(g), 64)
	if min := (config.DefaultHelmTimeout + 30*time.Second).Seconds(); grace < min {
		t.Errorf("terminationGracePeriodSeconds = %v, want at least %v (the Helm timeout %s and the clean-up after it)", g, min, config.DefaultHelmTimeout)
	}
	if v, _, _ := unstructured.NestedBool(spec, "securityContext", "runAsNonRoot"); !v {
		t.Error("pod runAsNonRoot not set")
	}
	if v, _, _ := unstructured.NestedString(spec, "securityContext", "seccompProfile", "type"); v != "RuntimeDefault" {
		t.Errorf("pod seccomp = %q", v)
	}
	cs, _, _ := unstructured.NestedSlice(spec, "containers")
	if len(cs) != 1 {
		t.Fatalf("%d containers", len(cs))
	}
	c := cs[0].(map[string]any)
	sc := c["securityContext"].(map[string]any)
	if sc["readOnlyRootFilesystem"] != true || sc["runAsNonRoot"] != true || sc["allowPrivilegeEscalation"] != false {
		t.Errorf("container securityContext = %v", sc)
	}
	if drop := fmt.Sprint(sc["capabilities"].(map[string]any)["drop"]); drop != "[ALL]" {
		t.Errorf("capabilities drop = %s", drop)
	}
	if sp, _, _ := unstructured.NestedString(sc, "seccompProfile", "type"); sp != "RuntimeDefault" {
		t.Errorf("container seccomp = %q", sp)
	}
	for _, k := range []string{"requests", "limits"} {
		if r, _, _ := unstructured.NestedMap(c, "resources", k); r["cpu"] == nil || r["memory"] == nil {
			t.Errorf("resources.%s = %v", k, r)
		}
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		p, _, _ := unstructured.NestedString(c, probe, "httpGet", "path")
		port, _, _ := unstructured.NestedFieldNoCopy(c, probe, "httpGet", "port")
		if p != path || port != "metrics" {
			t.Errorf("%s = %s on %v, want %s on metrics", probe, p, port, path)
		}
	}
	env := map[string]map[string]any{}
	for _, e := range c["env"].([]any) {
		m := e.(map[string]any)
		if _, clear := m["value"]; clear && m["name"] != "HOME" && m["name"] != "TZ" {
			t.Errorf("env %s has a clear value", m["name"])
		}
		env[m["name"].(string)] = m
	}
	wantRef := []string{config.EnvDatabaseURL}
	if !app {
		wantRef = append(wantRef, "GITHUB_TOKEN")
	} else if _, ok := env["GITHUB_TOKEN"]; ok {
		t.Error("GITHUB_TOKEN set although the App is used")
	}
	for _, name := range wantRef {
		if ref, _, _ := unstructured.NestedString(env[name], "valueFrom", "secretKeyRef", "name"); ref == "" {
			t.Errorf("env %s not from a secretKeyRef: %v", name, env[name])
		}
	}
	vols := fmt.Sprint(spec["volumes"])
	if app != strings.Contains(vols, "secretName:previewd-app-key") {
		t.Errorf("app key volume (app=%v): %s", app, vols)
	}
}

// parseConfig loads the ConfigMap's previewd.yaml with previewd's own
// parser, the image's paths mapped onto this checkout.
func parseConfig(t *testing.T, objs []*unstructured.Unstructured) *config.Config {
	t.Helper()
	cm := chartcheck.Find(objs, "ConfigMap")
	text, _, _ := unstructured.NestedString(cm.Object, "data", "previewd.yaml")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "private-key.pem"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, "/charts/preview-app", filepath.Join(chartcheck.RepoRoot(), "charts", "preview-app"))
	text = strings.ReplaceAll(text, "/etc/previewd/github-app", dir)
	if !strings.Contains(text, "repositories:\n") && !strings.Contains(text, "repositories: []") {
		t.Fatalf("no repositories in config:\n%s", text)
	}
	if strings.Contains(text, "repositories: []") {
		// previewd refuses an empty list; the default values leave it to the user.
		_, err := config.Parse(strings.NewReader(text), dir, env)
		if err == nil || !strings.Contains(err.Error(), "repositories: is empty") {
			t.Fatalf("default config: want the empty-repositories error, got %v\n%s", err, text)
		}
		// With one repository added, everything else must load.
		var c config.Config
		if err := decodeLoose(text, &c); err != nil {
			t.Fatal(err)
		}
		return &c
	}
	cfg, err := config.Parse(strings.NewReader(text), dir, env)
	if err != nil {
		t.Fatalf("rendered config does not load: %v\n%s", err, text)
	}
	return cfg
}

func env(k string) string {
	switch k {
	case "GITHUB_TOKEN":
		return "tok"
	case config.EnvDatabaseURL:
		return "postgres://u@db/previewd"
	}
	return ""
}

// decodeLoose parses a config that fails validation, for field checks.
func decodeLoose(text string, c *config.Config) error {
	text = strings.Replace(text, "repositories: []", `repositories:
  - name: a/b
    chart: `+filepath.Join(chartcheck.RepoRoot(), "charts", "preview-app")+`
    image: r.example.com/a/b`, 1)
	cfg, err := config.Parse(strings.NewReader(text), "", env)
	if err != nil {
		return err
	}
	*c = *cfg
	c.Repositories = nil
	return nil
}

// TestServerDryRun applies every rendered object (default and full values)
// to the local API server with dryRun=All, the monitoring CRDs installed.
func TestServerDryRun(t *testing.T) {
	c := testbed.Kube(t)
	ctx := context.Background()
	dyn, err := dynamic.NewForConfig(c.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	installCRDs(t, dyn)
	dc, err := discovery.NewDiscoveryClientForConfig(c.RESTConfig)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	ns := testbed.Namespace(t, c)
	for name, vals := range map[string]map[string]any{"default": nil, "full": fullValues(t)} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, vals, chartcheck.RenderOptions{Namespace: ns, APIVersions: []string{monitoringV1}})
			for _, o := range objs {
				gvk := o.GroupVersionKind()
				m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					t.Errorf("%s %s: %v", gvk, o.GetName(), err)
					continue
				}
				var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
				if m.Scope.Name() == meta.RESTScopeNameNamespace {
					ri = dyn.Resource(m.Resource).Namespace(ns)
				}
				_, err = ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "chartcheck", Force: true, DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					t.Errorf("server-side dry-run apply of %s %s: %v", gvk.Kind, o.GetName(), err)
				} else {
					t.Logf("dry-run apply ok: %s %s", gvk.Kind, o.GetName())
				}
			}
		})
	}
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func installCRDs(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join("testdata", "monitoring-crds.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crds, err := chartcheck.SplitManifest(string(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		_, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating CRD %s: %v", crd.GetName(), err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			live, err := dyn.Resource(crdGVR).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err == nil && established(live) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("CRD %s not established: %v", crd.GetName(), err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}
