package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	helmkube "helm.sh/helm/v4/pkg/kube"
	ri "helm.sh/helm/v4/pkg/release"
	rcommon "helm.sh/helm/v4/pkg/release/common"
	release "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/client-go/rest"

	"github.com/previewd/previewd/reconcile/model"
)

// FieldManager is the server-side apply field manager of every object
// previewd's Helm releases write. Helm 4 otherwise names the manager after
// the running binary (os.Args[0]), and an upgrade by a binary of another
// name (a renamed or wrapped executable, a test binary) then conflicts with
// every field the first one set.
const FieldManager = "previewd"

// UseFieldManager makes FieldManager the server-side apply field manager of
// the Helm SDK, a process-wide setting: the program calls it once where it
// starts (cmd/previewd, the test harness), before any release is applied.
func UseFieldManager() { helmkube.ManagedFieldsManager = FieldManager }

const (
	defaultMaxHistory  = 5
	defaultHelmTimeout = 5 * time.Minute
	// abandonTimeout bounds the clean-up after a cancelled operation.
	abandonTimeout = 10 * time.Second
	storageDriver  = "secret"
)

func lockedStatus(s rcommon.Status) bool {
	return s.IsPending() || s == rcommon.StatusUninstalling
}

// InstallRequest is one InstallOrUpgrade.
type InstallRequest struct {
	Namespace string
	Name      string
	// Chart is the chart to install, loaded for this operation alone
	// (Helm changes it while installing); if nil, ChartPath is loaded.
	Chart *chart.Chart
	// ChartPath is a chart directory or packaged .tgz; it is loaded anew
	// for every operation.
	ChartPath string
	// Values are passed to Helm as they are (never as --set strings),
	// replacing the previous revision's values (ResetValues).
	Values map[string]any
	// Timeout bounds the whole operation (including hooks); zero means 5m.
	Timeout time.Duration
}

// Releases installs, upgrades and uninstalls Helm releases with the Helm 4
// SDK. Every operation builds its own action.Configuration and loads its own
// chart, so one Releases is safe for concurrent use; only RESTConfig is
// shared. (A shared discovery cache would buy nothing: Helm invalidates it
// at the start of every install and upgrade.) Release records are kept by
// Store (previewd's PostgreSQL); without one, as Secrets in the release's
// namespace (Helm's storage driver "secret").
type Releases struct {
	RESTConfig *rest.Config
	// Store keeps the release records (nil: Secrets in the namespace).
	Store ReleaseStore
	// MaxHistory is the number of revisions kept per release; zero means 5.
	MaxHistory int
	// Log receives previewd's Info lines and Helm's own logging; nil
	// discards.
	Log *slog.Logger

	// newConfig replaces the per-operation configuration (unit tests use
	// Helm's memory driver and fake kube client).
	newConfig func(ctx context.Context, namespace string) (*action.Configuration, error)
	// wrap, if set, wraps the transport of every operation (tests observe
	// or interrupt requests).
	wrap func(http.RoundTripper) http.RoundTripper
}

func (r *Releases) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Releases) maxHistory() int {
	if r.MaxHistory <= 0 {
		return defaultMaxHistory
	}
	return r.MaxHistory
}

// config builds a fresh Helm configuration for one operation in namespace.
// Every API request it makes is bound to ctx: once ctx is done, the
// operation can make no further change.
func (r *Releases) config(ctx context.Context, namespace string) (*action.Configuration, error) {
	if r.newConfig != nil {
		return r.newConfig(ctx, namespace)
	}
	if r.RESTConfig == nil {
		return nil, errors.New("kube: Releases.RESTConfig is nil")
	}
	rc := rest.CopyConfig(r.RESTConfig)
	rc.Wrap(bindContext(ctx))
	if r.wrap != nil {
		rc.Wrap(r.wrap)
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(r.log().With("component", "helm").Handler()))
	drv := storageDriver
	if r.Store != nil {
		drv = "memory" // replaced below; initialising it makes no request
	}
	if err := cfg.Init(newRESTGetter(rc, namespace), namespace, drv); err != nil {
		return nil, fmt.Errorf("initialising helm: %w", err)
	}
	if r.Store != nil {
		cfg.Releases = storage.Init(r.Store.Driver(ctx, namespace))
	}
	if kc, ok := cfg.KubeClient.(*helmkube.Client); ok {
		kc.Namespace = namespace
	}
	cfg.Releases.MaxHistory = r.maxHistory()
	return cfg, nil
}

// Get returns the newest revision of release name in namespace. A release
// that does not exist is model.Release{Exists: false} and no error.
func (r *Releases) Get(ctx context.Context, namespace, name string) (model.Release, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	none := model.Release{Name: name, Namespace: namespace}
	cfg, err := r.config(ctx, namespace)
	if err != nil {
		return none, err
	}
	last, err := lastRevision(cfg, name)
	if err != nil {
		return none, fmt.Errorf("reading release %s/%s: %w", namespace, name, err)
	}
	if last == nil {
		return none, nil
	}
	return toRelease(last), nil
}

// InstallOrUpgrade installs the release if it has no revision (or only an
// uninstalled one kept in history) and upgrades it otherwise. Helm does not
// wait for the release's workloads (WaitReady does, failing fast); it does
// not roll back on failure (a failed revision stays failed and the next
// call upgrades it). A locked release (pending-*, uninstalling) is not
// touched: the error wraps model.ErrLocked and the returned Release describes it.
//
// If ctx ends (or Timeout passes) during the operation, no further request
// is sent, and a revision left pending by this call is marked failed, so the
// next call can upgrade without Unlock.
func (r *Releases) InstallOrUpgrade(ctx context.Context, req InstallRequest) (model.Release, error) {
	none := model.Release{Name: req.Name, Namespace: req.Namespace}
	if req.Namespace == "" || req.Name == "" || (req.ChartPath == "" && req.Chart == nil) {
		return none, errors.New("kube: InstallRequest needs Namespace, Name and Chart or ChartPath")
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = defaultHelmTimeout
	}
	opCtx, cancel := context.WithTimeoutCause(ctx, timeout, fmt.Errorf("helm operation timed out after %s", timeout))
	defer cancel()
	log := r.log().With("namespace", req.Namespace, "release", req.Name)

	cfg, err := r.config(opCtx, req.Namespace)
	if err != nil {
		return none, err
	}
	ch := req.Chart
	if ch == nil {
		if ch, err = loader.Load(req.ChartPath); err != nil {
			return none, fmt.Errorf("loading chart %s: %w", req.ChartPath, err)
		}
	}
	last, err := lastRevision(cfg, req.Name)
	if err != nil {
		return none, fmt.Errorf("reading release %s/%s: %w", req.Namespace, req.Name, err)
	}
	if last != nil && lockedStatus(last.Info.Status) {
		return toRelease(last), lockedError(last)
	}

	vals := copyValues(req.Values)
	waitOpts := []helmkube.WaitOption{helmkube.WithWaitContext(opCtx)}
	// Helm itself gets a context that never ends. Cancellation reaches it
	// through the transport (every request fails once opCtx is done) and
	// the wait context, so Helm unwinds on its own error paths and returns.
	// Cancelling the context given to RunWithContext instead is unsafe in
	// Helm 4.3.1: Install returns while its goroutine keeps going, and
	// Upgrade's context watcher, if it notices the cancellation after a
	// successful upgrade, marks the returned release failed (a data race)
	// and blocks forever on an unbuffered channel.
	helmCtx := context.WithoutCancel(opCtx)
	start := time.Now()
	var (
		verb     string
		revision int
		res      ri.Releaser
	)
	if last == nil || last.Info.Status == rcommon.StatusUninstalled {
		verb, revision = "install", 1
		in := action.NewInstall(cfg)
		in.Namespace = req.Namespace
		in.ReleaseName = req.Name
		in.Timeout = timeout
		in.WaitStrategy = helmkube.HookOnlyStrategy
		in.WaitOptions = waitOpts
		in.RollbackOnFailure = false
		in.ForceConflicts = true
		in.PostRenderer = confine{namespace: req.Namespace}
		if last != nil {
			in.Replace = true // reuse the name of an uninstalled release
			revision = last.Version + 1
		}
		res, err = in.RunWithContext(helmCtx, ch, vals)
	} else {
		verb, revision = "upgrade", last.Version+1
		up := action.NewUpgrade(cfg)
		up.Namespace = req.Namespace
		up.Timeout = timeout
		up.WaitStrategy = helmkube.HookOnlyStrategy
		up.WaitOptions = waitOpts
		up.MaxHistory = r.maxHistory()
		up.ResetValues = true
		up.RollbackOnFailure = false
		up.CleanupOnFail = false
		// A preview is previewd's: a field someone else changed since
		// (kubectl edit, a controller) is taken back, not a failed upgrade.
		up.ForceConflicts = true
		up.PostRenderer = confine{namespace: req.Namespace}
		res, err = up.RunWithContext(helmCtx, req.Name, ch, vals)
	}
	if err == nil && opCtx.Err() != nil {
		// Helm logs and ignores a failure to record the final status, so
		// a success when the context ended may have left the record pending.
		err = context.Cause(opCtx)
	}
	if err != nil {
		if opCtx.Err() != nil {
			r.abandon(ctx, req.Namespace, req.Name, revision, context.Cause(opCtx))
		}
		return releaseOr(res, none), r.opError(ctx, opCtx, verb, req, err)
	}
	rel, err := asV1(res)
	if err != nil || rel == nil {
		return none, fmt.Errorf("%s release %s/%s: unexpected result %T", gerund(verb), req.Namespace, req.Name, res)
	}
	out := toRelease(rel)
	log.Info(pastTense(verb)+" release", "revision", out.Revision, "status", out.Status,
		"chart", out.ChartName+"-"+out.ChartVersion, "duration", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// opError explains a failed operation: a pending-lock error wraps
// ErrLocked, a cancelled or timed-out one wraps ctx's error.
func (r *Releases) opError(parent, opCtx context.Context, verb string, req InstallRequest, err error) error {
	what := fmt.Sprintf("%s release %s/%s", gerund(verb), req.Namespace, req.Name)
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("%s: %w", what, parent.Err())
	case opCtx.Err() != nil:
		return fmt.Errorf("%s: %w: %w", what, context.Cause(opCtx), opCtx.Err())
	case strings.Contains(err.Error(), "another operation (install/upgrade/rollback) is in progress"):
		return fmt.Errorf("%s: %w: %w", what, model.ErrLocked, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

func pastTense(verb string) string {
	switch verb {
	case "install":
		return "installed"
	case "upgrade":
		return "upgraded"
	}
	return verb
}

func gerund(verb string) string {
	switch verb {
	case "install":
		return "installing"
	case "upgrade":
		return "upgrading"
	}
	return verb
}

// abandon marks revision failed if it is still pending after this process
// gave up on it (ctx cancelled or timed out). The cancelled operation can no
// longer write (its requests are bound to the dead context), so nothing
// else is changing the record.
func (r *Releases) abandon(parent context.Context, namespace, name string, revision int, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), abandonTimeout)
	defer cancel()
	log := r.log().With("namespace", namespace, "release", name, "revision", revision)
	cfg, err := r.config(ctx, namespace)
	if err != nil {
		log.Warn("cannot mark abandoned release failed", "err", err)
		return
	}
	got, err := cfg.Releases.Get(name, revision)
	if err != nil {
		if !errors.Is(err, driver.ErrReleaseNotFound) {
			log.Warn("cannot read abandoned release", "err", err)
		}
		return
	}
	rel, err := asV1(got)
	if err != nil || rel == nil || rel.Info == nil || !rel.Info.Status.IsPending() {
		return
	}
	rel.SetStatus(rcommon.StatusFailed, fmt.Sprintf("previewd abandoned the operation: %v", cause))
	if err := cfg.Releases.Update(rel); err != nil {
		log.Warn("cannot mark abandoned release failed; it stays locked", "err", err)
		return
	}
	log.Info("marked abandoned release failed", "cause", cause)
}

// Unlock recovers a release stuck in pending-* or uninstalling (a process
// died mid-operation) by uninstalling it without hooks and without keeping
// history, so that the next InstallOrUpgrade installs afresh. A release that
// is not locked, or does not exist, is left alone.
func (r *Releases) Unlock(ctx context.Context, namespace, name string) error {
	ctx, cancel := context.WithTimeout(ctx, defaultHelmTimeout)
	defer cancel()
	cfg, err := r.config(ctx, namespace)
	if err != nil {
		return err
	}
	last, err := lastRevision(cfg, name)
	if err != nil {
		return fmt.Errorf("unlocking release %s/%s: reading history: %w", namespace, name, err)
	}
	if last == nil || !lockedStatus(last.Info.Status) {
		return nil
	}
	if err := r.uninstall(ctx, cfg, name, true); err != nil {
		return fmt.Errorf("unlocking release %s/%s (%s): %w", namespace, name, last.Info.Status, err)
	}
	r.log().Info("unlocked release by uninstalling it", "namespace", namespace, "release", name,
		"was", string(last.Info.Status), "revision", last.Version, "since", last.Info.LastDeployed)
	return nil
}

// Uninstall removes the release and its history. A release that does not
// exist is success.
func (r *Releases) Uninstall(ctx context.Context, namespace, name string) error {
	ctx, cancel := context.WithTimeout(ctx, defaultHelmTimeout)
	defer cancel()
	cfg, err := r.config(ctx, namespace)
	if err != nil {
		return err
	}
	last, err := lastRevision(cfg, name)
	if err != nil {
		return fmt.Errorf("uninstalling release %s/%s: reading history: %w", namespace, name, err)
	}
	if last == nil {
		return nil
	}
	if err := r.uninstall(ctx, cfg, name, false); err != nil {
		return fmt.Errorf("uninstalling release %s/%s: %w", namespace, name, err)
	}
	r.log().Info("uninstalled release", "namespace", namespace, "release", name)
	return nil
}

func (r *Releases) uninstall(ctx context.Context, cfg *action.Configuration, name string, noHooks bool) error {
	un := action.NewUninstall(cfg)
	un.IgnoreNotFound = true
	un.KeepHistory = false
	un.DisableHooks = noHooks
	un.WaitStrategy = helmkube.HookOnlyStrategy
	un.WaitOptions = []helmkube.WaitOption{helmkube.WithWaitContext(ctx)}
	un.Timeout = defaultHelmTimeout
	if dl, ok := ctx.Deadline(); ok {
		un.Timeout = time.Until(dl)
	}
	_, err := un.Run(name)
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

// lastRevision returns the newest revision of name, or nil if none.
func lastRevision(cfg *action.Configuration, name string) (*release.Release, error) {
	hist, err := cfg.Releases.History(name)
	if errors.Is(err, driver.ErrReleaseNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var last *release.Release
	for _, h := range hist {
		rel, err := asV1(h)
		if err != nil {
			return nil, err
		}
		if rel != nil && rel.Info != nil && (last == nil || rel.Version > last.Version) {
			last = rel
		}
	}
	return last, nil
}

func lockedError(last *release.Release) error {
	return fmt.Errorf("release %s/%s revision %d is %s since %s (%s): %w",
		last.Namespace, last.Name, last.Version, last.Info.Status,
		last.Info.LastDeployed.UTC().Format(time.RFC3339), last.Info.Description, model.ErrLocked)
}

func asV1(r ri.Releaser) (*release.Release, error) {
	switch v := r.(type) {
	case *release.Release:
		return v, nil
	case release.Release:
		return &v, nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported release type %T", r)
}

func releaseOr(r ri.Releaser, none model.Release) model.Release {
	if rel, err := asV1(r); err == nil && rel != nil && rel.Info != nil {
		return toRelease(rel)
	}
	return none
}

func toRelease(rel *release.Release) model.Release {
	out := model.Release{
		Exists:    true,
		Name:      rel.Name,
		Namespace: rel.Namespace,
		Revision:  rel.Version,
		Values:    rel.Config,
		SHA:       imageTag(rel.Config),
	}
	if rel.Info != nil {
		out.Status = string(rel.Info.Status)
		out.Updated = rel.Info.LastDeployed
		if rel.Info.Status == rcommon.StatusUninstalling && !rel.Info.Deleted.IsZero() {
			out.Updated = rel.Info.Deleted
		}
		out.Description = rel.Info.Description
	}
	if md := chartMetadata(rel.Chart); md != nil {
		out.ChartName, out.ChartVersion = md.Name, md.Version
	}
	return out
}

func chartMetadata(c *chart.Chart) *chart.Metadata {
	if c == nil {
		return nil
	}
	return c.Metadata
}

// copyValues deep-copies the maps and slices of a values tree, so that
// neither Helm nor the caller sees the other's later changes.
func copyValues(v map[string]any) map[string]any {
	if v == nil {
		return map[string]any{}
	}
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = copyValue(x)
	}
	return out
}

func copyValue(x any) any {
	switch t := x.(type) {
	case map[string]any:
		return copyValues(t)
	case []any:
		s := make([]any, len(t))
		for i := range t {
			s[i] = copyValue(t[i])
		}
		return s
	}
	return x
}

// imageTag is the image tag a revision deployed (values image.tag).
func imageTag(values map[string]any) string {
	img, _ := values["image"].(map[string]any)
	tag, _ := img["tag"].(string)
	return tag
}
