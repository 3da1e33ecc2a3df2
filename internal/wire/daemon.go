package wire

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gregjones/httpcache"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/previewd/previewd/github"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/redact"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/state"
)

// Options tune Build beyond the configuration file.
type Options struct {
	// ReadOnly builds a daemon that can only plan: no migration, nothing
	// written to PostgreSQL (the HTTP cache is read, new entries stay in
	// memory), no executor.
	ReadOnly bool
	Log      *slog.Logger
	// Registry receives the metrics; nil makes a new one.
	Registry *prometheus.Registry
	// Backoff replaces the configuration's retry schedule (tests).
	Backoff func(n int) time.Duration
	// ImageRecheck replaces the schedule of looks for a missing image
	// (tests).
	ImageRecheck func(waited time.Duration) time.Duration
	// HTTPTimeout replaces the GitHub client's timeout per request (tests).
	HTTPTimeout time.Duration
	// MutationSpacing replaces the gap between GitHub mutations (tests);
	// 0 also lifts the write budget (GitHub's content creation limits).
	MutationSpacing *time.Duration
}

// Daemon is a wired previewd.
type Daemon struct {
	standby atomic.Bool
	leader  prometheus.Gauge

	Config   *config.Config
	Store    *state.Store
	Loop     *reconcile.Loop
	Executor *reconcile.Executor
	Registry *prometheus.Registry
	Kube     kubernetes.Interface
	Log      *slog.Logger
	// Profiling serves Go's runtime profiles at /debug/pprof/ (run
	// --pprof); off by default.
	Profiling bool
}

// RESTConfig loads the cluster configuration: the configured kubeconfig,
// else in-cluster, else $KUBECONFIG / ~/.kube/config.
func RESTConfig(path string) (*rest.Config, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("loading kubernetes.kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	}
	if cfg, err := rest.InClusterConfig(); err == nil {
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster configuration: not in a cluster, and $KUBECONFIG / ~/.kube/config unusable (%w); set kubernetes.kubeconfig", err)
	}
	return cfg, nil
}

// Build wires a daemon. The caller closes it.
func Build(ctx context.Context, cfg *config.Config, o Options) (*Daemon, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		if err := register(reg, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, err
		}
	}
	st, err := state.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Config: cfg, Store: st, Registry: reg, Log: log}
	d.leader = prometheus.NewGauge(prometheus.GaugeOpts{Name: "previewd_leader",
		Help: "1 while this process is the leader of its instance (the one that acts), 0 on a standby."})
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	if !o.ReadOnly {
		if err := register(reg, d.leader); err != nil {
			return nil, err
		}
		if err := st.Migrate(ctx); err != nil {
			return nil, err
		}
	}

	restCfg, err := RESTConfig(cfg.Kubernetes.Kubeconfig)
	if err != nil {
		return nil, err
	}
	restCfg.QPS, restCfg.Burst = 50, 100
	// previewd's own reads of built-in kinds (namespaces, the cycle's
	// Deployment list, readiness) in protobuf: cheaper to decode than JSON.
	// Helm keeps restCfg (it handles arbitrary kinds).
	pbCfg := rest.CopyConfig(restCfg)
	pbCfg.ContentType = "application/vnd.kubernetes.protobuf"
	pbCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kc, err := kubernetes.NewForConfig(pbCfg)
	if err != nil {
		return nil, fmt.Errorf("building the Kubernetes client: %w", err)
	}
	d.Kube = kc
	secrets := []string{cfg.Token.Reveal(), dbPassword(cfg.DatabaseURL)}
	for _, r := range cfg.Repositories {
		secrets = append(secrets, r.RegistryPassword.Reveal())
	}
	scrub := redact.New(secrets...)

	var cache httpcache.Cache
	pg := st.HTTPCache(context.WithoutCancel(ctx), state.HTTPCacheOptions{MaxBytes: int64(cfg.GitHub.CacheMaxMB) << 20, OnError: func(op string, err error) {
		log.Warn("HTTP cache in PostgreSQL unavailable; requests go uncached", "op", op, "err", err)
	}})
	if o.ReadOnly {
		cache = newReadOnlyCache(pg)
	} else {
		cache = pg
	}
	gh, err := newGitHub(ctx, cfg, cache, reg, log, o.MutationSpacing, o.HTTPTimeout)
	if err != nil {
		return nil, err
	}

	cl := &kube.Cluster{
		Client:     kc,
		Namespaces: &kube.Namespaces{Client: kc, Instance: cfg.Instance, Log: log, PreviewRole: cfg.Kubernetes.PreviewRole},
		Releases:   &kube.Releases{RESTConfig: restCfg, Store: st.HelmReleases(), Log: log},
		Charts:     &kube.Charts{Repos: gh, Registry: registryAccess(cfg), Log: log},
		Redact:     scrub,
		Log:        log,
	}
	if cl.Namespaces.PreviewRole != "" {
		if cl.Namespaces.Subject, err = kube.Subject(ctx, kc); err != nil {
			return nil, fmt.Errorf("kubernetes.preview_role: %w", err)
		}
	}
	// Release records are in PostgreSQL: one query says which changed.
	cl.Records = st.HelmReleases()
	settings := Settings(cfg)
	if o.Backoff != nil {
		settings.Backoff = o.Backoff
	}
	if o.ImageRecheck != nil {
		settings.ImageRecheck = o.ImageRecheck
	}
	deps := reconcile.Deps{Log: log, Redact: scrub}
	var ex *reconcile.Executor
	if !o.ReadOnly {
		if ex, err = reconcile.NewExecutor(gh, cl, st, settings, deps); err != nil {
			return nil, err
		}
		if deps.Metrics, err = reconcile.NewMetrics(reg, ex.InFlight); err != nil {
			return nil, err
		}
		ex.SetMetrics(deps.Metrics)
	}
	// plan and run hash comments the same way.
	hashes := &reconcile.HashCache{R: reconcile.NewRenderer(settings, scrub)}
	d.Executor = ex
	d.Loop, err = reconcile.NewLoop(gh, cl, st, ex, settings, reconcile.LoopOptions{
		NamespaceFor: kube.NamespaceName, CommentHash: hashes.Hash, ResyncContext: github.Unconditional,
		ChartDigest: kube.ChartSourceDigest, Retain: hashes.Retain,
	}, deps)
	if err != nil {
		return nil, err
	}
	ok = true
	return d, nil
}

// Settings are the reconciler's settings from a validated configuration
// (which owns every default).
func Settings(cfg *config.Config) reconcile.Settings {
	s := reconcile.Settings{
		Interval:      cfg.Interval,
		Resync:        cfg.ResyncInterval,
		DeployTimeout: cfg.DeployTimeout,
		HelmTimeout:   cfg.HelmTimeout,
		MaxParallel:   cfg.MaxParallelDeploys,
		MaxAttempts:   cfg.MaxAttempts,
		Backoff:       config.RetryBackoff,
		ImageRecheck:  config.ImageRecheck,
		OrphanGrace:   *cfg.OrphanGrace,
		Retention:     *cfg.Retention,
	}
	for _, r := range cfg.Repositories {
		s.Repos = append(s.Repos, reconcile.Repo{Name: r.Name, Chart: r.CompiledChart, Image: r.Image,
			Host: r.CompiledHost, Values: r.CompiledValues, Digest: settingsDigest(r), Fence: r.ModelFence(),
			Policy: reconcile.RepoPolicy{AllowForks: r.AllowForks, SkipDrafts: r.SkipDrafts,
				RequireLabels: r.RequireLabels, IgnoreLabels: r.IgnoreLabels, ImageWait: *r.ImageWait,
				WaitForChecks: r.WaitForChecks, ChecksTimeout: r.ChecksTimeout}})
	}
	return s
}

// registryAccess is how each repository pulls its OCI chart.
func registryAccess(cfg *config.Config) map[string]kube.RegistryAccess {
	out := map[string]kube.RegistryAccess{}
	for _, r := range cfg.Repositories {
		if r.CompiledChart.Kind == model.ChartOCI {
			out[r.Name] = kube.RegistryAccess{Username: r.RegistryUsername, Password: r.RegistryPassword.Reveal(), PlainHTTP: r.ChartPlainHTTP}
		}
	}
	return out
}

// valuesVersion changes when previewd changes the Helm values it adds
// itself (its defaults, what it owns): every preview is then upgraded.
const valuesVersion = 1

// settingsDigest identifies what of a repository's settings goes into its
// previews' Helm values, and their fence.
func settingsDigest(r config.Repository) string {
	b, err := json.Marshal(struct {
		V      int            `json:"v"`
		Image  string         `json:"image"`
		Host   string         `json:"host"`
		Values map[string]any `json:"values"`
		// The fence is applied with each deploy: a change upgrades.
		Fence model.Fence `json:"fence"`
	}{valuesVersion, r.Image, r.Host, r.Values, r.ModelFence()})
	if err != nil {
		return "" // unknown: no drift is planned
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:12])
}

func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// Close releases the database pool.
func (d *Daemon) Close() {
	if d.Store != nil {
		d.Store.Close()
	}
}

// Handler serves /metrics, /healthz (the process answers) and /readyz
// (a cycle has succeeded and PostgreSQL and the API server answer now).
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := d.Ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	if d.Profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Ready says why the daemon is not ready, or nil.
func (d *Daemon) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var errs []error
	if !d.standby.Load() && d.Loop.LastSuccess().IsZero() {
		errs = append(errs, errors.New("no successful reconcile cycle yet"))
	}
	var wg sync.WaitGroup
	var pgErr, kubeErr error
	wg.Add(2)
	go func() { defer wg.Done(); pgErr = d.Store.Ping(ctx) }()
	go func() {
		defer wg.Done()
		_, kubeErr = d.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	}()
	wg.Wait()
	if pgErr != nil {
		errs = append(errs, fmt.Errorf("the PostgreSQL server: %w", pgErr))
	}
	if kubeErr != nil {
		errs = append(errs, fmt.Errorf("the Kubernetes API server: %w", kubeErr))
	}
	return errors.Join(errs...)
}

// SetLeader records whether this process leads; a standby is ready when
// PostgreSQL and the API server answer (it can take over at once).
func (d *Daemon) SetLeader(leading bool) {
	d.standby.Store(!leading)
	if leading {
		d.leader.Set(1)
	} else {
		d.leader.Set(0)
	}
}

// Serve runs the HTTP endpoints until ctx ends.
func (d *Daemon) Serve(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", addr, err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	}
}

// dbPassword is the password in a postgres:// URL, for redaction.
func dbPassword(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	p, _ := u.User.Password()
	return p
}
