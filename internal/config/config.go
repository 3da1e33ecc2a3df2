// Package config loads and validates previewd's YAML configuration. Every
// secret comes from the environment; every field is checked at start and an
// error names the field path and what to do about it.
package config

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/reconcile/render"
)

// EnvDatabaseURL overrides database_url.
const EnvDatabaseURL = "PREVIEWD_DATABASE_URL"

// Defaults of the settings that have no key in the file: every default of
// previewd lives in this package.
const (
	// DefaultHelmTimeout bounds one Helm install, upgrade or uninstall
	// (not the readiness wait, which deploy_timeout bounds).
	DefaultHelmTimeout = 2 * time.Minute
	// DefaultRetryBase is the wait after a first failed deploy attempt;
	// it doubles after each further failure (1 s, 2 s, 4 s, ...).
	DefaultRetryBase = time.Second
)

// DefaultChecksTimeout is repositories[].checks_timeout when unset.
const DefaultChecksTimeout = 30 * time.Minute

// DefaultRetention is retention when unset.
const DefaultRetention = 30 * 24 * time.Hour

// DefaultOrphanGrace is orphan_grace when unset.
const DefaultOrphanGrace = time.Hour

// DefaultImageWait is repositories[].image_wait when unset.
const DefaultImageWait = 15 * time.Minute

// ImageRecheck is when previewd looks again for an image it has waited
// for since waited ago: 15 s at first, doubling, at most 2 m.
func ImageRecheck(waited time.Duration) time.Duration {
	return min(max(waited, 15*time.Second), 2*time.Minute)
}

// RetryBackoff is the default wait after failed attempt n (1-based):
// DefaultRetryBase doubled n-1 times.
func RetryBackoff(n int) time.Duration { return DefaultRetryBase << max(n-1, 0) }

// Config is the whole file.
type Config struct {
	Listen         string        `yaml:"listen"`
	Interval       time.Duration `yaml:"interval"`
	ResyncInterval time.Duration `yaml:"resync_interval"`
	DatabaseURL    string        `yaml:"database_url"`
	Instance       string        `yaml:"instance"`
	GitHub         GitHub        `yaml:"github"`
	Kubernetes     Kubernetes    `yaml:"kubernetes"`
	DeployTimeout  time.Duration `yaml:"deploy_timeout"`
	// HelmTimeout bounds one Helm install, upgrade or uninstall (not the
	// readiness wait); a release left pending longer than it (plus 15 s)
	// was interrupted and is taken over. Default DefaultHelmTimeout.
	HelmTimeout        time.Duration `yaml:"helm_timeout"`
	MaxParallelDeploys int           `yaml:"max_parallel_deploys"`
	MaxAttempts        int           `yaml:"max_attempts"`
	// OrphanGrace is how long the previews of a repository that is no
	// longer configured are kept (reported) before they are removed; 0:
	// at once. Default DefaultOrphanGrace.
	OrphanGrace *time.Duration `yaml:"orphan_grace"`
	// Retention is how long the records of deleted previews (and their
	// deploy attempts) are kept; 0: for ever. Default DefaultRetention.
	Retention    *time.Duration `yaml:"retention"`
	Repositories []Repository   `yaml:"repositories"`

	// Token is the personal access token read from github.token_env; never
	// logged or printed.
	Token Secret `yaml:"-"`
}

// GitHub selects the API and the credentials.
type GitHub struct {
	APIURL   string `yaml:"api_url"`
	TokenEnv string `yaml:"token_env"`
	App      *App   `yaml:"app"`
	// CacheMaxMB bounds the HTTP cache of GitHub's answers kept in
	// PostgreSQL, in MiB (default DefaultCacheMaxMB).
	CacheMaxMB int `yaml:"cache_max_mb"`
}

// DefaultCacheMaxMB is github.cache_max_mb's default: room for the list
// pages of thousands of open PRs (about 2 MB per 100 PRs).
const DefaultCacheMaxMB = 512

// App is GitHub App authentication (JWT → installation token).
type App struct {
	AppID          int64  `yaml:"app_id"`
	InstallationID int64  `yaml:"installation_id"`
	PrivateKeyFile string `yaml:"private_key_file"`
}

// Kubernetes selects the cluster.
type Kubernetes struct {
	Kubeconfig string `yaml:"kubeconfig"`
	// PreviewRole is the ClusterRole previewd binds to itself in every
	// preview namespace it owns (RoleBinding "previewd"): its rights
	// there. Empty: no binding; previewd's own identity must hold them.
	PreviewRole string `yaml:"preview_role"`
}

// Repository is one GitHub repository whose PRs get previews.
type Repository struct {
	Name string `yaml:"name"`
	// Chart is where the chart comes from: a directory (relative to the
	// configuration file), oci://host/path/chart (with ChartVersion) or
	// repo:path/in/repo (the PR's own repository at its head SHA).
	Chart string `yaml:"chart"`
	// ChartVersion is the version of an oci:// chart.
	ChartVersion string `yaml:"chart_version"`
	// ChartCredentials name the environment variables holding the OCI
	// registry's user name and password (or token); none: anonymous.
	ChartCredentials *ChartCredentials `yaml:"chart_credentials"`
	// ChartPlainHTTP talks to the OCI registry over plain HTTP (a registry
	// inside the cluster without TLS).
	ChartPlainHTTP bool           `yaml:"chart_plain_http"`
	Image          string         `yaml:"image"`
	Host           string         `yaml:"host"`
	Values         map[string]any `yaml:"values"`
	AllowForks     bool           `yaml:"allow_forks"`
	SkipDrafts     bool           `yaml:"skip_drafts"`
	RequireLabels  []string       `yaml:"require_labels"`
	IgnoreLabels   []string       `yaml:"ignore_labels"`
	// ImageWait is how long an image-pull failure of the preview's own
	// image at the head SHA counts as "CI has not pushed it yet" before it
	// is a failure; 0 turns the wait off. Default DefaultImageWait.
	ImageWait *time.Duration `yaml:"image_wait"`
	// WaitForChecks names the check runs (by name) and commit statuses (by
	// context) that must succeed on the head SHA before anything is
	// deployed; ["*"] is every check reported on it.
	WaitForChecks []string `yaml:"wait_for_checks"`
	// ChecksTimeout bounds the wait for them from the SHA's first sight.
	ChecksTimeout time.Duration `yaml:"checks_timeout"`
	// Fence is what surrounds each preview namespace (defaults:
	// DefaultFence).
	Fence Fence `yaml:"fence"`
	// CopySecrets are Secrets copied into each preview namespace, kept
	// up to date when the source changes.
	CopySecrets *CopySecrets `yaml:"copy_secrets"`

	// CompiledHost and CompiledValues are Host and Values compiled once,
	// when the file is validated (nil host: the repository sets none).
	CompiledHost   *render.Template `yaml:"-"`
	CompiledValues *render.Values   `yaml:"-"`
	// CompiledChart is Chart and ChartVersion, parsed.
	CompiledChart model.ChartSource `yaml:"-"`
	// RegistryUsername and RegistryPassword are read from
	// ChartCredentials' variables; never logged or printed.
	RegistryUsername string `yaml:"-"`
	RegistryPassword Secret `yaml:"-"`
}

// Fence is the per-repository fence of preview namespaces; a key left
// out takes its default.
type Fence struct {
	// PodSecurity is the Pod Security level enforced: restricted
	// (default) or baseline.
	PodSecurity string `yaml:"pod_security"`
	// IngressFrom are the labels of the namespaces whose pods may reach
	// the preview (the ingress controller's). Default
	// kubernetes.io/metadata.name: ingress-nginx.
	IngressFrom map[string]string `yaml:"ingress_from"`
	// EgressAllow are CIDRs the preview may reach besides DNS and its own
	// namespace. Default none.
	EgressAllow []string `yaml:"egress_allow"`
	// Quota are ResourceQuota hard limits, merged over DefaultQuota.
	Quota map[string]string `yaml:"quota"`
	// ContainerLimits and ContainerRequests are the LimitRange defaults
	// for containers that set none, merged over the defaults.
	ContainerLimits   map[string]string `yaml:"container_limits"`
	ContainerRequests map[string]string `yaml:"container_requests"`
}

// CopySecrets names Secrets copied from a namespace into every preview
// namespace of the repository.
type CopySecrets struct {
	From  string   `yaml:"from"`
	Names []string `yaml:"names"`
}

// Fence defaults: sized for one small preview.
var (
	DefaultIngressFrom       = map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}
	DefaultQuota             = map[string]string{"pods": "10", "requests.cpu": "1", "requests.memory": "1Gi", "limits.cpu": "2", "limits.memory": "2Gi"}
	DefaultContainerLimits   = map[string]string{"cpu": "500m", "memory": "512Mi"}
	DefaultContainerRequests = map[string]string{"cpu": "100m", "memory": "128Mi"}
)

// ChartCredentials name where an OCI registry's credentials are.
type ChartCredentials struct {
	UsernameEnv string `yaml:"username_env"`
	PasswordEnv string `yaml:"password_env"`
}

// Owner and Repo split Name.
func (r Repository) Owner() string { o, _, _ := strings.Cut(r.Name, "/"); return o }

// Repo is the part of Name after the slash.
func (r Repository) Repo() string { _, n, _ := strings.Cut(r.Name, "/"); return n }

// Secret is a string that never prints.
type Secret string

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return s.String() }

// Reveal returns the value for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Load reads path, applies defaults and the environment, and validates.
func Load(path string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	cfg, err := Parse(f, filepath.Dir(path), getenv)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML from r; relative chart and key paths resolve against dir.
func Parse(r io.Reader, dir string, getenv func(string) string) (*Config, error) {
	var cfg Config
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parsing YAML (unknown keys are errors; check spelling against the README): %w", err)
	}
	cfg.setDefaults(getenv)
	for i := range cfg.Repositories {
		r := &cfg.Repositories[i]
		if r.Chart != "" && !filepath.IsAbs(r.Chart) && !strings.HasPrefix(r.Chart, "oci://") && !strings.HasPrefix(r.Chart, "repo:") {
			r.Chart = filepath.Join(dir, r.Chart)
		}
	}
	if cfg.GitHub.App != nil && cfg.GitHub.App.PrivateKeyFile != "" && !filepath.IsAbs(cfg.GitHub.App.PrivateKeyFile) {
		cfg.GitHub.App.PrivateKeyFile = filepath.Join(dir, cfg.GitHub.App.PrivateKeyFile)
	}
	if err := cfg.validate(getenv); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (c *Config) setDefaults(getenv func(string) string) {
	if c.Listen == "" {
		c.Listen = ":9090"
	}
	if c.Interval == 0 {
		c.Interval = 30 * time.Second
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = time.Hour
	}
	if v := getenv(EnvDatabaseURL); v != "" {
		c.DatabaseURL = v
	}
	if c.Instance == "" {
		c.Instance = "default"
	}
	if c.GitHub.APIURL == "" {
		c.GitHub.APIURL = "https://api.github.com/"
	}
	if !strings.HasSuffix(c.GitHub.APIURL, "/") {
		c.GitHub.APIURL += "/"
	}
	if c.GitHub.TokenEnv == "" && c.GitHub.App == nil {
		c.GitHub.TokenEnv = "GITHUB_TOKEN"
	}
	if c.DeployTimeout == 0 {
		c.DeployTimeout = 3 * time.Minute
	}
	if c.HelmTimeout == 0 {
		c.HelmTimeout = DefaultHelmTimeout
	}
	if c.MaxParallelDeploys == 0 {
		c.MaxParallelDeploys = 4
	}
	if c.GitHub.CacheMaxMB == 0 {
		c.GitHub.CacheMaxMB = DefaultCacheMaxMB
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 3
	}
	if c.OrphanGrace == nil {
		d := DefaultOrphanGrace
		c.OrphanGrace = &d
	}
	if c.Retention == nil {
		d := DefaultRetention
		c.Retention = &d
	}
	for i := range c.Repositories {
		if c.Repositories[i].ChecksTimeout == 0 {
			c.Repositories[i].ChecksTimeout = DefaultChecksTimeout
		}
		if c.Repositories[i].ImageWait == nil {
			d := DefaultImageWait
			c.Repositories[i].ImageWait = &d
		}
	}
}

var (
	repoName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$`)
	instance  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	imageRepo = regexp.MustCompile(`^[a-z0-9]+([._/:-][a-z0-9]+)*$`)
)

// FieldError names the field path and the fix.
type FieldError struct {
	Path    string
	Problem string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Problem }

func (c *Config) validate(getenv func(string) string) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Problem: fmt.Sprintf(format, args...)})
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "must be host:port such as \":9090\", got %q", c.Listen)
	}
	if c.Interval < time.Second {
		bad("interval", "must be at least 1s, got %s", c.Interval)
	}
	if c.ResyncInterval < c.Interval {
		bad("resync_interval", "must be at least interval (%s), got %s", c.Interval, c.ResyncInterval)
	}
	if c.DatabaseURL == "" {
		bad("database_url", "is empty: set it or the environment variable %s", EnvDatabaseURL)
	} else if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// Do not echo the URL: it may carry a password.
		bad("database_url", "must be a postgres:// URL")
	}
	if !instance.MatchString(c.Instance) {
		bad("instance", "must be a DNS label (lowercase letters, digits, '-'), got %q", c.Instance)
	}
	if u, err := url.Parse(c.GitHub.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("github.api_url", "must be an http(s) URL such as https://api.github.com/ or https://ghe.example.com/api/v3/, got %q", c.GitHub.APIURL)
	}
	if c.GitHub.CacheMaxMB < 16 || c.GitHub.CacheMaxMB > 65536 {
		bad("github.cache_max_mb", "must be between 16 and 65536 (MiB), got %d", c.GitHub.CacheMaxMB)
	}
	switch {
	case c.GitHub.App != nil && c.GitHub.TokenEnv != "":
		bad("github", "set either token_env or app, not both")
	case c.GitHub.App != nil:
		a := c.GitHub.App
		if a.AppID <= 0 {
			bad("github.app.app_id", "must be the App's numeric id (> 0)")
		}
		if a.InstallationID <= 0 {
			bad("github.app.installation_id", "must be the installation's numeric id (> 0)")
		}
		if a.PrivateKeyFile == "" {
			bad("github.app.private_key_file", "is empty: point it at the App's PEM private key")
		} else if _, err := os.Stat(a.PrivateKeyFile); err != nil {
			bad("github.app.private_key_file", "cannot be read: %v", err)
		}
	default:
		c.Token = Secret(getenv(c.GitHub.TokenEnv))
		if c.Token == "" {
			bad("github.token_env", "environment variable %s is empty: export the token there", c.GitHub.TokenEnv)
		}
	}
	if c.DeployTimeout < 10*time.Second {
		bad("deploy_timeout", "must be at least 10s, got %s", c.DeployTimeout)
	}
	if c.HelmTimeout < 10*time.Second || c.HelmTimeout > 30*time.Minute {
		bad("helm_timeout", "must be between 10s and 30m, got %s", c.HelmTimeout)
	}
	if c.MaxParallelDeploys < 1 || c.MaxParallelDeploys > 64 {
		bad("max_parallel_deploys", "must be between 1 and 64, got %d", c.MaxParallelDeploys)
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 20 {
		bad("max_attempts", "must be between 1 and 20, got %d", c.MaxAttempts)
	}
	if g := *c.OrphanGrace; g < 0 || g > 30*24*time.Hour {
		bad("orphan_grace", "must be between 0 (remove at once) and 720h, got %s", g)
	}
	if r := *c.Retention; r != 0 && r < time.Hour {
		bad("retention", "must be 0 (keep for ever) or at least 1h, got %s", r)
	}
	if len(c.Repositories) == 0 {
		bad("repositories", "is empty: list at least one repository")
	}
	seen := map[string]int{}
	for i, r := range c.Repositories {
		p := fmt.Sprintf("repositories[%d]", i)
		if !repoName.MatchString(r.Name) {
			bad(p+".name", "must be owner/name, got %q", r.Name)
		} else if j, ok := seen[strings.ToLower(r.Name)]; ok {
			bad(p+".name", "%q is listed twice (also repositories[%d])", r.Name, j)
		} else {
			seen[strings.ToLower(r.Name)] = i
		}
		checkChart(&c.Repositories[i], p, getenv, bad)
		if !imageRepo.MatchString(r.Image) || strings.Contains(r.Image, "@") {
			bad(p+".image", "must be an image repository without tag (the head SHA is the tag), got %q", r.Image)
		} else if last := r.Image[strings.LastIndex(r.Image, "/")+1:]; strings.Contains(last, ":") {
			bad(p+".image", "must not carry a tag (the head SHA is the tag), got %q", r.Image)
		}
		if r.Host != "" {
			host, err := render.Compile(r.Host)
			if err != nil {
				bad(p+".host", "%v", err)
			}
			c.Repositories[i].CompiledHost = host
		}
		checkValues(&c.Repositories[i], p+".values", bad)
		for j, name := range r.WaitForChecks {
			switch {
			case strings.TrimSpace(name) == "":
				bad(fmt.Sprintf("%s.wait_for_checks[%d]", p, j), "is empty: give a check run name or a status context, or \"*\" for every check")
			case name == "*" && len(r.WaitForChecks) > 1:
				bad(p+".wait_for_checks", "\"*\" already means every check reported on the commit: list names or \"*\", not both")
			}
		}
		if r.ChecksTimeout < time.Minute || r.ChecksTimeout > 7*24*time.Hour {
			bad(p+".checks_timeout", "must be between 1m and 168h, got %s", r.ChecksTimeout)
		}
		if w := *r.ImageWait; w < 0 || w > 24*time.Hour {
			bad(p+".image_wait", "must be between 0 (no wait) and 24h, got %s", w)
		}
		checkFence(&c.Repositories[i], p, bad)
	}
	if len(errs) == 0 {
		// GitHub's repository names are case-insensitive: previewd's
		// identity of a repository (its records, comment markers,
		// namespace names) is the name in lower case, so that a change of
		// letter case in this file changes nothing.
		for i := range c.Repositories {
			c.Repositories[i].Name = strings.ToLower(c.Repositories[i].Name)
		}
	}
	return errors.Join(errs...)
}

// checkFence validates the fence and copy_secrets, and fills the fence's
// defaults.
func checkFence(r *Repository, p string, bad func(path, format string, args ...any)) {
	f := &r.Fence
	switch f.PodSecurity {
	case "":
		f.PodSecurity = model.PodSecurityRestricted
	case model.PodSecurityRestricted, model.PodSecurityBaseline:
	default:
		bad(p+".fence.pod_security", "must be restricted or baseline (privileged is not offered: previews run PR code), got %q", f.PodSecurity)
	}
	if f.IngressFrom == nil {
		f.IngressFrom = maps.Clone(DefaultIngressFrom)
	}
	for k, v := range f.IngressFrom {
		if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			bad(p+".fence.ingress_from", "%q: %q is not a label selector entry (label name: label value)", k, v)
		}
	}
	for j, c := range f.EgressAllow {
		if _, _, err := net.ParseCIDR(c); err != nil {
			bad(fmt.Sprintf("%s.fence.egress_allow[%d]", p, j), "must be a CIDR such as 10.20.0.0/16, got %q", c)
		}
	}
	merge := func(key string, def map[string]string, got map[string]string) map[string]string {
		out := maps.Clone(def)
		for k, v := range got {
			if _, err := resource.ParseQuantity(v); err != nil {
				bad(p+".fence."+key+"."+k, "must be a quantity such as 500m or 1Gi, got %q", v)
			}
			out[k] = v
		}
		return out
	}
	f.Quota = merge("quota", DefaultQuota, f.Quota)
	f.ContainerLimits = merge("container_limits", DefaultContainerLimits, f.ContainerLimits)
	f.ContainerRequests = merge("container_requests", DefaultContainerRequests, f.ContainerRequests)
	if cs := r.CopySecrets; cs != nil {
		if len(validation.IsDNS1123Label(cs.From)) > 0 {
			bad(p+".copy_secrets.from", "must be the namespace the Secrets are copied from, got %q", cs.From)
		}
		if len(cs.Names) == 0 {
			bad(p+".copy_secrets.names", "is empty: name the Secrets to copy, or remove copy_secrets")
		}
		for j, n := range cs.Names {
			if len(validation.IsDNS1123Subdomain(n)) > 0 {
				bad(fmt.Sprintf("%s.copy_secrets.names[%d]", p, j), "must be a Secret name, got %q", n)
			}
		}
	}
}

// ModelFence is the repository's fence as the cluster applies it.
func (r Repository) ModelFence() model.Fence {
	f := model.Fence{PodSecurity: r.Fence.PodSecurity, IngressFrom: r.Fence.IngressFrom, EgressAllow: r.Fence.EgressAllow,
		Quota: r.Fence.Quota, Limits: r.Fence.ContainerLimits, Requests: r.Fence.ContainerRequests}
	if r.CopySecrets != nil {
		f.CopySecretsFrom, f.CopySecrets = r.CopySecrets.From, r.CopySecrets.Names
	}
	return f
}

func checkChart(r *Repository, p string, getenv func(string) string, bad func(path, format string, args ...any)) {
	if r.Chart == "" {
		bad(p+".chart", "is empty: give a chart directory (relative to the config file), oci://host/path/chart or repo:path/in/repo")
		return
	}
	src, err := model.ParseChartSource(r.Chart, r.ChartVersion)
	if err != nil {
		field := "chart"
		if ce, ok := errors.AsType[*model.ChartSourceError](err); ok {
			field = ce.Field
		}
		bad(p+"."+field, "%v", err)
		return
	}
	r.CompiledChart = src
	if src.Kind == model.ChartDir {
		if _, err := os.Stat(filepath.Join(r.Chart, "Chart.yaml")); err != nil {
			bad(p+".chart", "no Chart.yaml in %s (relative paths resolve against the config file's directory)", r.Chart)
		}
	}
	if src.Kind == model.ChartRepo && r.AllowForks {
		// The chart renders with previewd's identity (Helm's lookup reads
		// what previewd may read): not for the chart of anyone's fork.
		bad(p+".chart", "a repo: chart is rendered with previewd's own identity, so it is not allowed with allow_forks: true (any GitHub user could write it); use a directory or oci:// chart, or allow_forks: false")
	}
	if src.Kind != model.ChartOCI {
		if r.ChartCredentials != nil {
			bad(p+".chart_credentials", "is for oci:// charts only")
		}
		if r.ChartPlainHTTP {
			bad(p+".chart_plain_http", "is for oci:// charts only")
		}
		return
	}
	if cr := r.ChartCredentials; cr != nil {
		// Never echo the values: only the variables' names.
		switch {
		case cr.UsernameEnv == "" || cr.PasswordEnv == "":
			bad(p+".chart_credentials", "needs both username_env and password_env (the names of the environment variables holding them)")
		case getenv(cr.UsernameEnv) == "":
			bad(p+".chart_credentials.username_env", "environment variable %s is empty: export the registry user name there", cr.UsernameEnv)
		case getenv(cr.PasswordEnv) == "":
			bad(p+".chart_credentials.password_env", "environment variable %s is empty: export the registry password or token there", cr.PasswordEnv)
		default:
			r.RegistryUsername = getenv(cr.UsernameEnv)
			r.RegistryPassword = Secret(getenv(cr.PasswordEnv))
		}
	}
}

func checkValues(r *Repository, path string, bad func(path, format string, args ...any)) {
	v, err := render.CompileValues(r.Values)
	var pe *render.PathError
	for _, e := range unjoin(err) {
		if errors.As(e, &pe) {
			bad(path+pe.Path, "%v", pe.Err)
		} else {
			bad(path, "%v", e)
		}
	}
	r.CompiledValues = v
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
