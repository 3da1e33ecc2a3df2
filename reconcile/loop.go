package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/previewd/previewd/reconcile/model"
)

// ErrRecordsUnreadable: the store could not list previewd's records, so
// nothing was observed or planned.
var ErrRecordsUnreadable = errors.New("reading previews from PostgreSQL")

// LoopOptions are the loop's collaborators beyond the ports.
type LoopOptions struct {
	// NamespaceFor maps a PR to its namespace name.
	NamespaceFor func(repo string, number int) string
	// CommentHash renders a row's comment and hashes it; nil disables
	// comment repair.
	CommentHash func(model.Preview) string
	// ResyncContext marks the context of a full-resync cycle (the GitHub
	// client then bypasses its conditional-request cache once).
	ResyncContext func(context.Context) context.Context
	// ChartDigest identifies the contents of a chart; nil: no drift is
	// planned for chart changes or settings changes.
	ChartDigest func(chart model.ChartSource) (string, error)
	// Retain, if set, is told the live previews after each successful
	// cycle (caches drop the others).
	Retain func(live []model.Preview)
}

// ListConcurrency is how many repositories' open PRs are read at once.
const ListConcurrency = 8

// purgeEvery is how often the records of long-deleted previews are purged.
const purgeEvery = time.Hour

// purge removes, at most once per purgeEvery, the records of previews
// deleted longer than the retention ago.
func (l *Loop) purge(ctx context.Context, now time.Time) {
	if l.s.Retention <= 0 || now.Sub(l.lastPurge) < purgeEvery {
		return
	}
	l.lastPurge = now
	n, err := l.st.Purge(ctx, now.Add(-l.s.Retention))
	switch {
	case err != nil:
		l.log.Warn("purging the records of deleted previews failed; trying again in an hour", "err", l.d.Redact(err.Error()))
	case n > 0:
		l.log.Info("purged the records of deleted previews", "previews", n, "retention", l.s.Retention)
	}
}

// Loop is observe → plan → apply, level-triggered.
type Loop struct {
	gh  GitHub
	cl  Cluster
	st  Store
	ex  *Executor
	s   Settings
	o   LoopOptions
	d   Deps
	log *slog.Logger

	mu      sync.Mutex
	cycling sync.Mutex
	lastOK  time.Time
	// retries are the times of the retries failed attempts scheduled,
	// waits those of the looks again for a missing image, until they are
	// due; wake is signalled when one is added.
	retries, waits []time.Time
	wake           chan struct{}
	// orphanSince is when this process first saw previews of each
	// repository that is not configured.
	orphanSince map[string]time.Time
	// lastPurge is when deleted previews' records were last purged.
	lastPurge time.Time
	// configured are the repositories' policies by name (Settings are
	// fixed for the loop's life).
	configured map[string]RepoPolicy
}

// NewLoop wires a loop from validated settings; ex may be nil for a loop
// that only plans.
func NewLoop(gh GitHub, cl Cluster, st Store, ex *Executor, s Settings, o LoopOptions, d Deps) (*Loop, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if o.NamespaceFor == nil {
		return nil, errors.New("loop options: NamespaceFor is nil")
	}
	d = d.withDefaults()
	l := &Loop{gh: gh, cl: cl, st: st, ex: ex, s: s, o: o, d: d, log: d.Log, wake: make(chan struct{}, 1), configured: s.policies()}
	if ex != nil {
		ex.onRetry = l.retryScheduled
	}
	return l, nil
}

// retryScheduled is told by the executor when an attempt scheduled the
// next one (wait: a look again for a missing image): the loop cycles again
// then, and the plan decides.
func (l *Loop) retryScheduled(at time.Time, wait bool) {
	l.mu.Lock()
	if wait {
		l.waits = append(l.waits, at)
	} else {
		l.retries = append(l.retries, at)
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// nextRetry is the earliest scheduled retry (and look for an image, with
// waits); zero when none.
func (l *Loop) nextRetry(waits bool) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var next time.Time
	consider := func(ts []time.Time) {
		for _, t := range ts {
			if next.IsZero() || t.Before(next) {
				next = t
			}
		}
	}
	consider(l.retries)
	if waits {
		consider(l.waits)
	}
	return next
}

// dropDue forgets the scheduled times not after t (the cycle about to run
// plans them), and every look for an image when waits is false.
func (l *Loop) dropDue(t time.Time, waits bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	keep := func(ts []time.Time) []time.Time {
		out := ts[:0]
		for _, x := range ts {
			if x.After(t) {
				out = append(out, x)
			}
		}
		return out
	}
	l.retries = keep(l.retries)
	if waits {
		l.waits = keep(l.waits)
	} else {
		l.waits = nil
	}
}

// noticeOrphans returns when each repository that is not configured and
// has previews was first seen so (now for a new one, which is logged).
// With the cluster not observed in full, repositories seen before are
// kept: their namespaces may only have gone unseen.
func (l *Loop) noticeOrphans(repos []string, clusterComplete bool) map[string]time.Time {
	now := l.d.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	next := make(map[string]time.Time, len(repos))
	for _, r := range repos {
		since, ok := l.orphanSince[r]
		if !ok {
			since = now
			l.log.Warn("previews of a repository that is not configured; they are removed after orphan_grace unless it is configured again",
				"repo", r, "orphan_grace", l.s.OrphanGrace, "remove_at", now.Add(l.s.OrphanGrace).UTC().Format(time.RFC3339))
		}
		next[r] = since
	}
	if !clusterComplete {
		for r, since := range l.orphanSince {
			if _, ok := next[r]; !ok {
				next[r] = since
			}
		}
	}
	l.orphanSince = next
	out := make(map[string]time.Time, len(next))
	for r, t := range next {
		out[r] = t
	}
	return out
}

// Observe reads GitHub, PostgreSQL and the cluster. It writes nothing.
func (l *Loop) Observe(ctx context.Context) (Observation, error) {
	var obs Observation
	rows, err := l.st.List(ctx)
	if err != nil {
		return obs, fmt.Errorf("%w: %w", ErrRecordsUnreadable, err)
	}
	obs.Previews = rows

	var wanted []string
	var errs []error
	repos := make([]RepoObservation, len(l.s.Repos))

	var wg sync.WaitGroup
	rowsByKey := make(map[model.Key]*model.Preview, len(rows))
	for i := range rows {
		rowsByKey[rows[i].Key()] = &rows[i]
	}
	// At most ListConcurrency repositories are read at once (GitHub
	// refuses more than 100 concurrent requests per client and counts
	// bursts against its secondary limits).
	sem := make(chan struct{}, ListConcurrency)
	for i, repo := range l.s.Repos {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			repos[i] = l.observeRepo(ctx, repo, rowsByKey)
		}()
	}
	wg.Wait()
	for _, ro := range repos {
		switch {
		case errors.Is(ro.Err, ErrRepoUnreadable):
			// That repository's problem, not previewd's: reported (log,
			// metric, plan), its previews kept; the cycle goes on.
			l.log.Warn("repository cannot be read; its previews are kept and nothing of it is deleted",
				"repo", ro.Repo, "err", l.d.Redact(ro.Err.Error()))
		case ro.Err != nil:
			errs = append(errs, fmt.Errorf("observing %s: %w", ro.Repo, ro.Err))
		}
		for _, pr := range ro.Open {
			ns := l.o.NamespaceFor(ro.Repo, pr.Number)
			wanted = append(wanted, ns)
			if r := rowsByKey[model.Key{Repo: ro.Repo, Number: pr.Number}]; r != nil && r.Namespace != "" && r.Namespace != ns {
				wanted = append(wanted, r.Namespace) // a preview keeps its namespace
			}
		}
	}
	cobs, err := l.cl.Observe(ctx, wanted)
	if err != nil {
		cobs = model.ClusterObservation{Complete: false, Err: err}
		errs = append(errs, fmt.Errorf("observing the cluster: %w", err))
	}
	// Second pass: PRs that have a namespace or a row but are not in the
	// open list must be confirmed closed one by one.
	byRepo := map[string][]int{}
	for _, p := range rows {
		byRepo[p.Repo] = append(byRepo[p.Repo], p.Number)
	}
	for _, ns := range cobs.Owned {
		byRepo[ns.Repo] = append(byRepo[ns.Repo], ns.Number)
	}
	for i := range repos {
		ro := &repos[i]
		if !ro.Complete {
			continue
		}
		open := map[int]bool{}
		for _, pr := range ro.Open {
			open[pr.Number] = true
		}
		nums := byRepo[ro.Repo]
		slices.Sort(nums)
		for _, n := range slices.Compact(nums) {
			if open[n] {
				continue
			}
			_, st, err := l.gh.GetPR(ctx, ro.Repo, n)
			switch {
			case err != nil:
				l.log.Warn("PR missing from the open list and its state could not be read; keeping its preview",
					"repo", ro.Repo, "pr", n, "err", l.d.Redact(err.Error()))
				ro.Unconfirmed = append(ro.Unconfirmed, n)
			case st == PROpen:
				ro.Unconfirmed = append(ro.Unconfirmed, n)
			default:
				ro.Closed = append(ro.Closed, Closed{Number: n, Merged: st == PRMerged})
			}
		}
	}
	obs.Repos = repos
	obs.Cluster = cobs
	obs.Charts = l.chartDigests()
	l.secretVersions(ctx, obs.Charts)
	obs.OrphanSince = l.noticeOrphans(OrphanedRepos(obs, l.configured), cobs.Complete)
	return obs, errors.Join(errs...)
}

// chartDigests reads each repository's chart digest; a chart that cannot
// be read is logged and left out (no drift is concluded for it).
func (l *Loop) chartDigests() map[string]string {
	if l.o.ChartDigest == nil {
		return nil
	}
	out := make(map[string]string, len(l.s.Repos))
	byChart := map[string]string{} // repositories often share one chart
	for _, r := range l.s.Repos {
		if d, ok := byChart[r.Chart.String()]; ok {
			out[r.Name] = d
			continue
		}
		d, err := l.o.ChartDigest(r.Chart)
		if err != nil {
			l.log.Warn("reading the chart failed; configuration drift is not planned for this repository", "repo", r.Name, "err", l.d.Redact(err.Error()))
			continue
		}
		out[r.Name] = d
		byChart[r.Chart.String()] = d
	}
	return out
}

// secretVersions adds to each repository's chart digest the version of the
// Secrets it copies into its previews (copy_secrets), so that a change of
// a source Secret upgrades the previews, which copies it again. A source
// that cannot be read removes the digest: no drift is concluded.
func (l *Loop) secretVersions(ctx context.Context, digests map[string]string) {
	for _, r := range l.s.Repos {
		d, ok := digests[r.Name]
		if !ok || len(r.Fence.CopySecrets) == 0 {
			continue
		}
		v, err := l.cl.SecretsVersion(ctx, r.Fence.CopySecretsFrom, r.Fence.CopySecrets)
		if err != nil {
			l.log.Warn("reading the Secrets to copy failed; their changes are not rolled out this cycle", "repo", r.Name, "err", l.d.Redact(err.Error()))
			delete(digests, r.Name)
			continue
		}
		digests[r.Name] = d + "+secrets:" + v
	}
}

func (l *Loop) observeRepo(ctx context.Context, r Repo, rows map[model.Key]*model.Preview) RepoObservation {
	prs, err := l.gh.ListOpenPRs(ctx, r.Name)
	if err != nil {
		return RepoObservation{Repo: r.Name, Complete: false, Err: err}
	}
	ro := RepoObservation{Repo: r.Name, Complete: true, Open: prs}
	for i := range prs {
		prs[i].Repo = r.Name
		pr := prs[i]
		// Checks are read only for head SHAs that wait for them: a SHA
		// that got past them is not asked about again (and an unchanged
		// answer is a free 304).
		if len(r.Policy.WaitForChecks) == 0 || filtered(pr, r.Policy) != "" ||
			passedChecks(rows[model.Key{Repo: r.Name, Number: pr.Number}], pr.SHA) {
			continue
		}
		checks, err := l.gh.CommitChecks(ctx, r.Name, pr.SHA)
		if err != nil {
			l.log.Warn("reading the checks of a PR's head SHA failed; not deploying it this cycle",
				"repo", r.Name, "pr", pr.Number, "err", l.d.Redact(err.Error()))
		}
		if ro.Checks == nil {
			ro.Checks = map[int]ChecksRead{}
		}
		ro.Checks[pr.Number] = ChecksRead{SHA: pr.SHA, Checks: checks, Err: err}
	}
	return ro
}

// PlanOptions are the plan's options at now.
func (l *Loop) PlanOptions(now time.Time) Options {
	return l.s.PlanOptions(now, l.o.NamespaceFor, l.o.CommentHash)
}

// Plan observes and plans; it changes nothing anywhere (`previewd plan`).
func (l *Loop) Plan(ctx context.Context) (Result, error) {
	obs, err := l.Observe(ctx)
	res := Plan(obs, l.PlanOptions(l.d.Now()))
	return res, err
}

// Cycle observes, plans and hands the plan to the executor without waiting
// for it. The error reports what could not be observed.
func (l *Loop) Cycle(ctx context.Context) (Result, error) {
	l.cycling.Lock()
	defer l.cycling.Unlock()
	start := l.d.Now()
	obs, err := l.Observe(ctx)
	res := Plan(obs, l.PlanOptions(start))
	for _, s := range res.Skipped {
		l.log.Debug("skipped", "repo", s.Repo, "pr", s.Number, "state", string(s.State), "reason", s.Reason)
	}
	for _, a := range res.Actions {
		l.log.Debug("planned", "action", a.String())
	}
	if l.ex != nil && ctx.Err() == nil {
		for repo, id := range res.RepoIDs {
			if _, err := l.st.RecordRepoID(ctx, repo, id); err != nil {
				l.log.Warn("cannot record the repository's GitHub id; tried again next cycle", "repo", repo, "err", l.d.Redact(err.Error()))
			}
		}
		l.ex.Submit(ctx, res.Actions)
		if err == nil {
			l.ex.forgetExcept(obs.Previews)
			if l.o.Retain != nil {
				l.o.Retain(obs.Previews)
			}
			l.purge(ctx, start)
		}
	}
	end := l.d.Now()
	l.d.Metrics.cycle(start, end, err, obs.Previews, res.Actions)
	l.d.Metrics.repositories(end, obs.Repos, res)
	l.mu.Lock()
	if err == nil {
		l.lastOK = end
	}
	l.mu.Unlock()
	if err != nil {
		l.log.Warn("cycle observed only part of the world; nothing deleted where the observation failed", "err", l.d.Redact(err.Error()))
	} else {
		l.log.Info("cycle", "actions", len(res.Actions), "took", end.Sub(start).Round(time.Millisecond))
	}
	return res, err
}

// RunOnce runs one cycle and waits for its actions (`run --once`). When
// a failed attempt scheduled a retry, it waits for it and cycles again, so
// that it returns once every PR has reached an outcome the plan will not
// retry; the errors are those of the last cycle. It does not wait for an
// image CI has not pushed yet: that preview is left waiting.
func (l *Loop) RunOnce(ctx context.Context) error {
	l.dropDue(l.d.Now(), false)
	for {
		_, err := l.Cycle(ctx)
		if l.ex != nil {
			err = errors.Join(err, l.ex.Wait())
		}
		at := l.nextRetry(false)
		if at.IsZero() || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		}
		l.dropDue(l.d.Now(), false)
	}
}

// runRetries cycles when a retry (or a look for an image) that an attempt
// scheduled is due, between the interval's cycles.
func (l *Loop) runRetries(ctx context.Context, job func()) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	arm := func() {
		if next := l.nextRetry(true); !next.IsZero() {
			t.Reset(time.Until(next))
		}
	}
	for {
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-l.wake:
			arm()
		case <-t.C:
			l.dropDue(l.d.Now(), true)
			job()
			arm()
		}
	}
}

// LastSuccess is the end of the last cycle that observed everything.
func (l *Loop) LastSuccess() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastOK
}

// Run cycles now, then on the interval (robfig/cron), until ctx ends; a
// second job runs a full resync. In-flight deploys are waited for at the
// end: their Helm operations finish, their readiness waits are cancelled.
func (l *Loop) Run(ctx context.Context) error {
	c := cron.New(cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))
	job := func() {
		if ctx.Err() == nil {
			_, _ = l.Cycle(ctx)
		}
	}
	if _, err := c.AddFunc(fmt.Sprintf("@every %s", l.s.Interval), job); err != nil {
		return fmt.Errorf("scheduling the poll: %w", err)
	}
	if l.s.Resync > 0 {
		if _, err := c.AddFunc(fmt.Sprintf("@every %s", l.s.Resync), func() {
			if ctx.Err() != nil {
				return
			}
			l.log.Info("full resync: reading every list without the conditional-request cache")
			rctx := ctx
			if l.o.ResyncContext != nil {
				rctx = l.o.ResyncContext(ctx)
			}
			_, _ = l.Cycle(rctx)
		}); err != nil {
			return fmt.Errorf("scheduling the resync: %w", err)
		}
	}
	job()
	c.Start()
	retries := make(chan struct{})
	go func() { defer close(retries); l.runRetries(ctx, job) }()
	<-ctx.Done()
	<-c.Stop().Done()
	<-retries
	if l.ex != nil {
		_ = l.ex.Wait()
	}
	l.d.Metrics.standBy()
	return nil
}
