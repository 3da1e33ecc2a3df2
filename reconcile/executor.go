package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/previewd/previewd/internal/redact"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/reconcile/render"
)

// errLockFresh is a lock too young to be an interrupted operation.
var errLockFresh = errors.New("release locked by an operation that may still be running")

// ImagePullFailure is an application failure whose container could not
// pull its image: FailedImage names it ("" when the failure is another).
type ImagePullFailure interface{ FailedImage() string }

// missingImage reports whether err is a failure to pull the preview's own
// image at sha (repo:sha), which CI may not have pushed yet.
func missingImage(err error, repo, sha string) (string, bool) {
	var ipf ImagePullFailure
	if repo == "" || !errors.As(err, &ipf) {
		return "", false
	}
	img := ipf.FailedImage()
	norm := func(s string) string {
		return strings.TrimPrefix(strings.TrimPrefix(s, "docker.io/"), "library/")
	}
	return img, img != "" && norm(img) == norm(repo+":"+sha)
}

// AppFailure marks a deploy that failed because the application did not
// become ready (a reported outcome, not a failure of previewd).
type AppFailure interface{ AppFailure() bool }

// Transient marks a deploy that could not be made for a passing reason
// outside the PR (GitHub unavailable or rate limited while its chart was
// fetched, the API server stopped or unreachable during the operation):
// not an attempt of the SHA, tried again by a later cycle.
type Transient interface{ Transient() bool }

func transient(err error) bool {
	var t Transient
	return errors.As(err, &t) && t.Transient()
}

// Deps are the executor's and the loop's injected dependencies (not
// settings): the clock, the logger, the metrics and the redaction of
// messages shown on PRs and logged. Nil members mean: time.Now, discard,
// none, redact.String.
type Deps struct {
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *Metrics
	Redact  func(string) string
}

func (d Deps) withDefaults() Deps {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Redact == nil {
		d.Redact = redact.String
	}
	return d
}

// Executor runs plans: one sequence of actions per PR at a time, at most
// MaxParallel deploys or deletions at once. A newer SHA for a PR cancels
// the readiness wait of an older one; a Helm operation itself is never
// interrupted, so no release is left pending by previewd.
type Executor struct {
	gh    GitHub
	cl    Cluster
	st    Store
	s     Settings
	d     Deps
	repos map[string]Repo
	r     Renderer
	sem   chan struct{}
	log   *slog.Logger
	wg    sync.WaitGroup
	mu    sync.Mutex
	busy  map[model.Key]*flight
	// commentMu serializes the comment updates of one PR (a late
	// "deploying" update renders the row as it is by then).
	commentMu sync.Map // model.Key → *sync.Mutex
	errs      []error
	// onRetry is told when an attempt scheduled the next one: a retry
	// after a failure, or (wait) a look again for a missing image.
	onRetry func(at time.Time, wait bool)
}

type flight struct {
	sig     string // what the sequence does: its kinds and target SHA
	sha     string // deploy target, "" for other work
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewExecutor builds an Executor from validated settings.
func NewExecutor(gh GitHub, cl Cluster, st Store, s Settings, d Deps) (*Executor, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	d = d.withDefaults()
	repos := make(map[string]Repo, len(s.Repos))
	for _, r := range s.Repos {
		repos[r.Name] = r
	}
	return &Executor{gh: gh, cl: cl, st: st, s: s, d: d, repos: repos, r: NewRenderer(s, d.Redact),
		sem: make(chan struct{}, s.MaxParallel), log: d.Log, busy: map[model.Key]*flight{}}, nil
}

// Submit starts the plan's actions in the background, grouped per PR.
func (e *Executor) Submit(ctx context.Context, actions []Action) {
	var groups [][]Action
	idx := map[model.Key]int{}
	for _, a := range actions {
		i, ok := idx[a.Key()]
		if !ok {
			i = len(groups)
			idx[a.Key()] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], a)
	}
	for _, g := range groups {
		e.start(ctx, g)
	}
}

func deploySHA(g []Action) string {
	for _, a := range g {
		if a.Kind == KindDeploy || a.Kind == KindVerify {
			return a.SHA
		}
	}
	return ""
}

// signature names what a sequence of actions does, so that the same work
// planned again by a later cycle is not queued twice.
func signature(g []Action) string {
	var b strings.Builder
	for _, a := range g {
		if a.Kind == KindUnlock {
			continue // a retried deploy may or may not unlock first
		}
		b.WriteString(string(a.Kind) + ":" + a.SHA + " ")
	}
	return b.String()
}

func isDeletion(sig string) bool {
	return strings.HasPrefix(sig, string(KindDelete)+":") || strings.HasPrefix(sig, string(KindForget)+":")
}

func (e *Executor) start(ctx context.Context, g []Action) {
	key := g[0].Key()
	sha := deploySHA(g)
	sig := signature(g)
	e.mu.Lock()
	prev := e.busy[key]
	switch {
	case prev != nil && prev.sig == sig:
		e.mu.Unlock()
		return // already doing exactly this (a deploy of this SHA, a deletion)
	case prev != nil && sha != "" && prev.sha == sha:
		e.mu.Unlock()
		return // already deploying this SHA
	case prev != nil && g[0].Kind == KindComment:
		e.mu.Unlock()
		return // the running sequence updates the comment itself
	case prev != nil && isDeletion(prev.sig) && isDeletion(sig):
		e.mu.Unlock()
		return // a deletion is already under way
	}
	fctx, cancel := context.WithCancel(ctx)
	f := &flight{sig: sig, sha: sha, started: e.d.Now(), cancel: cancel, done: make(chan struct{})}
	e.busy[key] = f
	e.wg.Add(1)
	e.mu.Unlock()
	if prev != nil {
		e.log.Info("superseding in-flight work", "repo", key.Repo, "pr", key.Number, "old_sha", short(prev.sha), "new_sha", short(sha))
		prev.cancel()
	}
	go func() {
		defer e.wg.Done()
		defer close(f.done)
		defer cancel()
		if prev != nil {
			<-prev.done
		}
		err := e.runGroup(fctx, g)
		e.mu.Lock()
		if e.busy[key] == f {
			delete(e.busy, key)
		}
		if err != nil && !errors.Is(err, context.Canceled) && len(e.errs) < maxErrs {
			e.errs = append(e.errs, fmt.Errorf("%s: %s", key, e.d.Redact(err.Error())))
		}
		e.mu.Unlock()
	}()
}

// maxErrs bounds the errors kept between two Waits (a daemon that runs for
// months calls Wait only at shutdown).
const maxErrs = 100

// Wait blocks until everything submitted has finished and returns the
// errors of actions previewd could not carry out (an application that
// fails readiness is an outcome, not an error).
func (e *Executor) Wait() error {
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	err := errors.Join(e.errs...)
	e.errs = nil
	return err
}

// InFlight returns the start times of running deploys (for the
// stuck-deploy metric).
func (e *Executor) InFlight() []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []time.Time
	for _, f := range e.busy {
		if f.sha != "" {
			out = append(out, f.started)
		}
	}
	return out
}

func (e *Executor) runGroup(ctx context.Context, g []Action) error {
	var errs []error
	for _, a := range g {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log := e.log.With("repo", a.Repo, "pr", a.Number, "namespace", a.Namespace, "action", string(a.Kind))
		if a.SHA != "" {
			log = log.With("sha", short(a.SHA))
		}
		var err error
		switch a.Kind {
		case KindUnlock:
			log.Info("unlocking release stuck in a pending state", "reason", a.Reason)
			err = e.withSlot(ctx, func() error { return e.cl.Unlock(context.WithoutCancel(ctx), a.Namespace) })
		case KindDeploy, KindVerify:
			err = e.deploy(ctx, log, a)
		case KindBlocked:
			err = e.blocked(ctx, log, a)
		case KindWait:
			err = e.wait(ctx, log, a)
		case KindDelete:
			err = e.delete(ctx, log, a)
		case KindForget:
			err = e.forget(ctx, log, a)
		case KindRename:
			err = e.rename(ctx, log, a)
		case KindComment:
			err = e.comment(ctx, a.Key())
		}
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			log.Error("action failed", "err", e.d.Redact(err.Error()))
			errs = append(errs, fmt.Errorf("%s: %w", a.Kind, err))
			if a.Kind == KindUnlock {
				break
			}
		}
	}
	return errors.Join(errs...)
}

func (e *Executor) withSlot(ctx context.Context, fn func() error) error {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.sem }()
	return fn()
}

// values builds the Helm values of a preview: chart defaults previewd sets,
// then the repository's values, then what previewd owns (image, host, PR).
func values(spec Repo, a Action) (map[string]any, error) {
	data := render.Data{Namespace: a.Namespace, PR: render.PR{Number: a.Number, SHA: a.SHA}}
	if a.PR != nil {
		data.PR.Branch, data.PR.Title = a.PR.Branch, a.PR.Title
	}
	host, err := spec.Host.Render(data)
	if err != nil {
		return nil, err
	}
	data.Host = host
	repoValues, err := spec.Values.Render(data)
	if err != nil {
		return nil, err
	}
	v := map[string]any{
		"replicaCount": 1,
		"environment":  "preview",
		"resources": map[string]any{
			"limits":   map[string]any{"cpu": "500m", "memory": "512Mi"},
			"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
		},
	}
	merge(v, repoValues)
	merge(v, map[string]any{
		"image":       map[string]any{"repository": spec.Image, "tag": a.SHA},
		"host":        host,
		"environment": "preview",
		"pullRequest": map[string]any{"number": a.Number, "branch": data.PR.Branch},
	})
	return v, nil
}

func merge(dst, src map[string]any) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
			cp := map[string]any{}
			merge(cp, sm)
			dst[k] = cp
			continue
		}
		dst[k] = sv
	}
}

// deploy runs one attempt of the plan's deploy or verify: the plan owns
// the retry budget and the schedule (a.Attempt, a.RetryAfter); the
// executor records the outcome and, after a failure, the time of the
// retry the plan scheduled.
func (e *Executor) deploy(ctx context.Context, log *slog.Logger, a Action) error {
	key := a.Key()
	row, err := e.recordOpen(ctx, a)
	if err != nil {
		return err
	}
	if row.Status == model.StatusReady && row.DeployedSHA == a.SHA && row.ReadyAt.After(a.PlannedAt) && !a.PlannedAt.IsZero() {
		log.Debug("already ready since the plan was made; nothing to do")
		return nil
	}
	attempt, err := e.st.StartAttempt(ctx, key, a.SHA, e.d.Now())
	if err != nil {
		return err
	}
	// The "deploying" comment does not hold up the deploy: GitHub
	// mutations are spaced (secondary limits), and a burst of new PRs
	// would otherwise start one per spacing interval. A verify (a look at
	// readiness) and a drift upgrade keep the comment as it is: a blip
	// that heals costs no comment write.
	if a.Kind == KindDeploy && a.State != StateDrifted {
		e.commentAsync(ctx, key)
	}
	started := e.d.Now()
	log.Info("deploying", "attempt", a.Attempt, "of", e.s.MaxAttempts, "reason", a.Reason)
	err = e.withSlot(ctx, func() error { return e.attempt(ctx, log, a) })
	now := e.d.Now()
	finish := func(f model.Finish) error {
		err := e.st.FinishAttempt(context.WithoutCancel(ctx), key, a.SHA, attempt, f, now)
		if errors.Is(err, model.ErrStale) {
			return nil // a newer SHA or a deletion took over
		}
		return err
	}
	switch {
	case err == nil:
		if err := finish(model.Finish{Outcome: model.OutcomeReady, Fingerprint: a.Fingerprint}); err != nil {
			return err
		}
		e.d.Metrics.deployFinished("ready", now.Sub(started))
		// Deploy latency is head SHA first seen → Ready; a verify of a
		// preview that ran before, or an upgrade for a configuration
		// change, is not a deploy of a new SHA.
		if p, ok, _ := e.st.Get(ctx, key); ok && !p.SHAFirstSeenAt.IsZero() &&
			!a.State.rechecksRunning() && a.State != StateDrifted {
			e.d.Metrics.observeLatency(now.Sub(p.SHAFirstSeenAt))
		}
		log.Info("preview ready", "took", now.Sub(started).Round(time.Millisecond))
		return e.comment(ctx, key)
	case ctx.Err() != nil:
		// Superseded by a newer SHA or shutting down.
		_ = finish(model.Finish{Outcome: model.OutcomeCancelled, Error: "cancelled"})
		e.d.Metrics.deployFinished("cancelled", now.Sub(started))
		log.Info("deploy cancelled")
		return ctx.Err()
	case errors.Is(err, errLockFresh):
		// Not a failure of this SHA: someone else's operation may be
		// running. Planned again by a later cycle; unlocked once stale.
		_ = finish(model.Finish{Outcome: model.OutcomeCancelled, Error: e.d.Redact(err.Error())})
		e.d.Metrics.deployFinished("cancelled", now.Sub(started))
		log.Warn("release locked by a recent operation; will retry", "err", e.d.Redact(err.Error()))
		return err
	case transient(err):
		// Not a failure of this SHA either: its chart could not be
		// fetched now, or the API server went away. Planned again by a
		// later cycle.
		_ = finish(model.Finish{Outcome: model.OutcomeCancelled, Error: e.d.Redact(err.Error())})
		e.d.Metrics.deployFinished("cancelled", now.Sub(started))
		log.Warn("deploy interrupted for a passing reason (chart source or API server unreachable); will retry next cycle", "err", e.d.Redact(err.Error()))
		return err
	case errors.Is(err, model.ErrNotOwned):
		msg := blockedMessage(a.Namespace)
		log.Warn("preview blocked: namespace exists and is not owned by previewd; leaving it untouched", "err", e.d.Redact(err.Error()))
		if ferr := finish(model.Finish{Outcome: model.OutcomeFailed, Blocked: true, Error: msg}); ferr != nil {
			return ferr
		}
		e.d.Metrics.deployFinished("failed", now.Sub(started))
		_ = e.comment(ctx, key)
		return err
	}
	msg := e.d.Redact(err.Error())
	if img, ok := missingImage(err, e.repos[a.Repo].Image, a.SHA); ok && !a.ImageWaitUntil.IsZero() {
		if now.Before(a.ImageWaitUntil) {
			// Not a failure: CI has not pushed the image yet. The plan
			// looks again on its growing schedule until image_wait ends.
			next := now.Add(a.ImageRecheckAfter)
			if next.After(a.ImageWaitUntil) {
				next = a.ImageWaitUntil
			}
			if ferr := finish(model.Finish{Outcome: model.OutcomeWaiting, WaitingFor: model.WaitingForImage, Error: msg, NextAttemptAt: next}); ferr != nil {
				return ferr
			}
			e.d.Metrics.deployFinished("waiting", now.Sub(started))
			log.Info("image not pushed yet; looking again later", "image", img, "next", next.Format(time.RFC3339))
			_ = e.comment(ctx, key)
			if e.onRetry != nil {
				e.onRetry(next, true)
			}
			return nil
		}
		// image_wait is over: a failure, and the last for this SHA.
		msg = fmt.Sprintf("image %s still not available when image_wait ended: %s", img, msg)
		a.RetryAfter = 0
	}
	next := time.Time{}
	if a.RetryAfter > 0 {
		next = now.Add(a.RetryAfter)
	}
	if ferr := finish(model.Finish{Outcome: model.OutcomeFailed, Error: msg, NextAttemptAt: next}); ferr != nil {
		return ferr
	}
	e.d.Metrics.deployFinished("failed", now.Sub(started))
	log.Warn("deploy failed", "attempt", a.Attempt, "of", e.s.MaxAttempts, "err", firstLine(msg))
	_ = e.comment(ctx, key)
	if !next.IsZero() && e.onRetry != nil {
		e.onRetry(next, false)
	}
	var af AppFailure
	if errors.As(err, &af) && af.AppFailure() {
		return nil // reported on the PR; not previewd's failure
	}
	return err
}

// recordOpen records the open PR an action is for (model.RecordOpen).
func (e *Executor) recordOpen(ctx context.Context, a Action) (model.Preview, error) {
	o := model.Open{Namespace: a.Namespace, SHA: a.SHA, Now: e.d.Now()}
	if a.PR != nil {
		o.Branch, o.Title, o.RepoID = a.PR.Branch, a.PR.Title, a.PR.RepoID
	}
	return e.st.RecordOpen(ctx, a.Key(), o)
}

// blockedMessage is what the PR says about a namespace previewd does not
// own.
func blockedMessage(ns string) string {
	return fmt.Sprintf("namespace %s already exists and is not managed by previewd; previewd will not touch it. Delete or rename it to get a preview.", ns)
}

// attempt is one try: values, namespace, Helm operation (never
// interrupted half-way), readiness (cancellable).
func (e *Executor) attempt(ctx context.Context, log *slog.Logger, a Action) error {
	spec, ok := e.repos[a.Repo]
	if !ok {
		return fmt.Errorf("repository %s is not configured", a.Repo)
	}
	vals, err := values(spec, a)
	if err != nil {
		return fmt.Errorf("rendering values: %w", err)
	}
	chart, err := chartRef(spec, a)
	if err != nil && a.Kind == KindDeploy {
		return err // before the namespace: nothing is created for it
	}
	if err := e.cl.EnsureNamespace(ctx, a.Namespace, a.Repo, a.Number, spec.Fence); err != nil {
		return err
	}
	if a.Kind == KindDeploy {
		helmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.s.HelmTimeout)
		err := e.cl.Apply(helmCtx, a.Namespace, chart, vals, e.s.HelmTimeout)
		var le *model.LockedError
		if errors.As(err, &le) {
			// Nothing of ours runs for this PR (one sequence per PR), but
			// another process may: only a lock older than the deploy
			// timeout is an interrupted operation.
			if age := e.d.Now().Sub(le.Since); age <= e.s.LockStaleAfter() {
				err = fmt.Errorf("%w (%s for %s)", errLockFresh, le.Status, age.Round(time.Second))
			} else {
				log.Warn("release locked by an interrupted operation; reinstalling", "status", le.Status, "since", le.Since)
				if err = e.cl.Unlock(helmCtx, a.Namespace); err == nil {
					err = e.cl.Apply(helmCtx, a.Namespace, chart, vals, e.s.HelmTimeout)
				}
			}
		}
		cancel()
		if err != nil {
			return err
		}
	}
	return e.cl.WaitReady(ctx, a.Namespace, e.s.DeployTimeout)
}

// errForkChart refuses a fork's own chart where forks are not allowed.
var errForkChart = errors.New("the chart of a PR from a fork is not deployed (allow_forks: false)")

// chartRef is the chart of a deploy: a repo: chart is read at the SHA
// being deployed, and never from a fork unless forks are allowed.
func chartRef(spec Repo, a Action) (model.ChartRef, error) {
	ref := model.ChartRef{Source: spec.Chart, Repo: a.Repo, SHA: a.SHA}
	if spec.Chart.Kind == model.ChartRepo && !spec.Policy.AllowForks && (a.PR == nil || a.PR.Fork) {
		// Without the PR (a deploy planned from the record alone) it may
		// be a fork's: refuse rather than guess.
		return ref, errForkChart
	}
	return ref, nil
}

// wait records that the PR's head SHA is not deployed yet and why (the
// plan's reason: which checks), and says so on the PR.
func (e *Executor) wait(ctx context.Context, log *slog.Logger, a Action) error {
	now := e.d.Now()
	if _, err := e.recordOpen(ctx, a); err != nil {
		return err
	}
	log.Info("not deployed yet", "waiting_for", a.WaitingFor, "reason", a.Reason, "final", a.Final)
	if err := e.st.Hold(ctx, a.Key(), a.SHA, a.WaitingFor, a.Reason, a.Final, now); err != nil && !errors.Is(err, model.ErrStale) {
		return err
	}
	return e.comment(ctx, a.Key())
}

func (e *Executor) blocked(ctx context.Context, log *slog.Logger, a Action) error {
	if _, err := e.recordOpen(ctx, a); err != nil {
		return err
	}
	log.Warn("preview blocked: namespace exists and is not owned by previewd; leaving it untouched")
	if err := e.st.Block(ctx, a.Key(), a.SHA, blockedMessage(a.Namespace)); err != nil && !errors.Is(err, model.ErrStale) {
		return err
	}
	return e.comment(ctx, a.Key())
}

func (e *Executor) delete(ctx context.Context, log *slog.Logger, a Action) error {
	key := a.Key()
	now := e.d.Now()
	row, hasRow, err := e.st.Get(ctx, key)
	if err != nil {
		return err
	}
	if hasRow && row.Status == model.StatusDeleted && row.UpdatedAt.After(a.PlannedAt) && !a.PlannedAt.IsZero() {
		return nil // deleted since the plan was made
	}
	if hasRow {
		if err := e.st.MarkDeleting(ctx, key, now); err != nil {
			return err
		}
		// In the background: GitHub mutations are spaced 1 s apart, and 50
		// PRs closed at once waited for each other's "removing" comment
		// before their namespaces were deleted (59 s instead of 15 s).
		e.commentAsync(ctx, key)
	}
	log.Info("deleting preview", "reason", a.Reason)
	started := e.d.Now()
	// No deploy slot: a deletion costs the API server little, and a
	// namespace stuck terminating must not hold up deploys.
	err = e.cl.Delete(ctx, a.Namespace)
	e.d.Metrics.deletionFinished(err, e.d.Now().Sub(started))
	if err != nil {
		if hasRow {
			_ = e.st.SetError(ctx, key, e.d.Redact(err.Error()))
		}
		return err
	}
	log.Info("preview deleted", "took", e.d.Now().Sub(started).Round(time.Millisecond))
	if !hasRow {
		return nil
	}
	if err := e.st.MarkDeleted(ctx, key, e.d.Now()); err != nil {
		return err
	}
	return e.comment(ctx, key)
}

func (e *Executor) forget(ctx context.Context, log *slog.Logger, a Action) error {
	key := a.Key()
	now := e.d.Now()
	if err := e.st.MarkDeleting(ctx, key, now); err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	if err := e.st.MarkDeleted(ctx, key, now); err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	log.Info("preview forgotten: namespace already gone", "reason", a.Reason)
	return e.comment(ctx, key)
}

// rename moves a preview recorded under its repository's old name to the
// new one: the namespace first (idempotent), then the record, so that a
// failure in between is finished by the next cycle's rename.
func (e *Executor) rename(ctx context.Context, log *slog.Logger, a Action) error {
	if err := e.cl.RenameNamespace(ctx, a.Namespace, a.FromRepo, a.Repo, a.Number); err != nil {
		return err
	}
	if err := e.st.Rename(ctx, model.Key{Repo: a.FromRepo, Number: a.Number}, a.Repo); err != nil {
		return err
	}
	log.Info("preview moved to the repository's new name", "from", a.FromRepo, "reason", a.Reason)
	return nil
}

// Body renders the comment of a preview row.
func (e *Executor) Body(p model.Preview) string { return e.r.Body(p) }

// SetMetrics attaches metrics after construction (they read InFlight).
func (e *Executor) SetMetrics(m *Metrics) { e.d.Metrics = m }

// commentAsync updates the comment in the background; Wait waits for it.
func (e *Executor) commentAsync(ctx context.Context, key model.Key) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.comment(context.WithoutCancel(ctx), key)
	}()
}

// comment brings the PR's comment in line with its row; unchanged bodies
// are not sent. Failures are logged and repaired by a later plan.
func (e *Executor) comment(ctx context.Context, key model.Key) error {
	mu, _ := e.commentMu.LoadOrStore(key, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	p, ok, err := e.st.Get(ctx, key)
	if err != nil || !ok {
		return err
	}
	if CommentHash(e.Body(p)) == p.CommentHash {
		return nil
	}
	// The body is rendered when the write's turn comes, from the record
	// as it is then: a state that passed while the write waited (a
	// "deploying" overtaken by "ready") is never written.
	var hash string
	var renderErr error
	render := func() (int64, string, bool) {
		cur, ok, err := e.st.Get(ctx, key)
		if err != nil || !ok {
			renderErr = err
			return 0, "", false
		}
		body := e.Body(cur)
		hash = CommentHash(body)
		return cur.CommentID, body, hash != cur.CommentHash
	}
	id, written, err := e.gh.UpsertComment(ctx, key.Repo, key.Number, Marker(key.Repo, key.Number), finalStatus(p.Status), render)
	if err == nil {
		err = renderErr
	}
	if err != nil {
		e.log.Warn("updating PR comment failed; will retry next cycle", "repo", key.Repo, "pr", key.Number, "err", e.d.Redact(err.Error()))
		return fmt.Errorf("updating comment: %w", err)
	}
	if !written {
		return nil
	}
	return e.st.SetComment(ctx, key, id, hash)
}

// forgetExcept drops the per-preview state of previews that are not live
// any more (deleted), so that it does not grow with every PR ever seen.
func (e *Executor) forgetExcept(live []model.Preview) {
	keep := keys(live)
	e.commentMu.Range(func(k, v any) bool {
		if key := k.(model.Key); !keep[key] {
			mu := v.(*sync.Mutex)
			if mu.TryLock() { // not while a comment update runs
				e.commentMu.Delete(key)
				mu.Unlock()
			}
		}
		return true
	})
}

// commentLocks is how many previews have comment state (tests).
func (e *Executor) commentLocks() int {
	n := 0
	e.commentMu.Range(func(any, any) bool { n++; return true })
	return n
}

// finalStatus is a state whose comment goes before those of passing ones
// when writes queue up.
func finalStatus(s model.Status) bool {
	switch s {
	case model.StatusPending, model.StatusDeploying, model.StatusDeleting:
		return false
	}
	return true
}
