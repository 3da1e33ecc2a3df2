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

	"github.com/previewd/previewd/state"
)

// LoopOptions configure a Loop.
type LoopOptions struct {
	Repos         []string
	Policies      map[string]RepoPolicy
	NamespaceFor  func(repo string, number int) string
	MaxAttempts   int
	DeployTimeout time.Duration
	Interval      time.Duration
	Resync        time.Duration
	Now           func() time.Time
	Log           *slog.Logger
	Metrics       *Metrics
	// CommentHash renders a row's comment and hashes it; nil disables
	// comment repair.
	CommentHash func(state.Preview) string
	// ResyncContext marks the context of a full-resync cycle (the GitHub
	// client then bypasses its conditional-request cache once).
	ResyncContext func(context.Context) context.Context
}

// Loop is observe → plan → apply, level-triggered.
type Loop struct {
	gh  GitHub
	cl  Cluster
	st  Store
	ex  *Executor
	o   LoopOptions
	log *slog.Logger

	mu      sync.Mutex
	cycling sync.Mutex
	lastOK  time.Time
}

// NewLoop wires a loop; ex may be nil for a loop that only plans.
func NewLoop(gh GitHub, cl Cluster, st Store, ex *Executor, o LoopOptions) *Loop {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Loop{gh: gh, cl: cl, st: st, ex: ex, o: o, log: o.Log}
}

// Observe reads GitHub, PostgreSQL and the cluster. It writes nothing.
func (l *Loop) Observe(ctx context.Context) (Observation, error) {
	var obs Observation
	rows, err := l.st.List(ctx)
	if err != nil {
		return obs, fmt.Errorf("reading previews from PostgreSQL: %w", err)
	}
	obs.Previews = rows

	var wanted []string
	var errs []error
	repos := make([]RepoObservation, len(l.o.Repos))
	var wg sync.WaitGroup
	for i, repo := range l.o.Repos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			repos[i] = l.observeRepo(ctx, repo)
		}()
	}
	wg.Wait()
	for _, ro := range repos {
		if ro.Err != nil {
			errs = append(errs, fmt.Errorf("observing %s: %w", ro.Repo, ro.Err))
		}
		for _, pr := range ro.Open {
			wanted = append(wanted, l.o.NamespaceFor(ro.Repo, pr.Number))
		}
	}
	cobs, err := l.cl.Observe(ctx, wanted)
	if err != nil {
		cobs = ClusterObservation{Complete: false, Err: err}
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
					"repo", ro.Repo, "pr", n, "err", err)
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
	return obs, errors.Join(errs...)
}

func (l *Loop) observeRepo(ctx context.Context, repo string) RepoObservation {
	prs, err := l.gh.ListOpenPRs(ctx, repo)
	if err != nil {
		return RepoObservation{Repo: repo, Complete: false, Err: err}
	}
	for i := range prs {
		prs[i].Repo = repo
	}
	return RepoObservation{Repo: repo, Complete: true, Open: prs}
}

// PlanOptions are the plan's options at now.
func (l *Loop) PlanOptions(now time.Time) Options {
	return Options{Now: now, MaxAttempts: l.o.MaxAttempts, DeployTimeout: l.o.DeployTimeout,
		Policies: l.o.Policies, NamespaceFor: l.o.NamespaceFor, CommentHash: l.o.CommentHash}
}

// Plan observes and plans; it changes nothing anywhere (`previewd plan`).
func (l *Loop) Plan(ctx context.Context) (Result, error) {
	obs, err := l.Observe(ctx)
	res := Plan(obs, l.PlanOptions(l.o.Now()))
	return res, err
}

// Cycle observes, plans and hands the plan to the executor without waiting
// for it. The error reports what could not be observed.
func (l *Loop) Cycle(ctx context.Context) (Result, error) {
	l.cycling.Lock()
	defer l.cycling.Unlock()
	start := l.o.Now()
	obs, err := l.Observe(ctx)
	res := Plan(obs, l.PlanOptions(start))
	for _, s := range res.Skipped {
		l.log.Debug("skipped", "repo", s.Repo, "pr", s.Number, "reason", s.Reason)
	}
	for _, a := range res.Actions {
		l.log.Debug("planned", "action", a.String())
	}
	if l.ex != nil && ctx.Err() == nil {
		l.ex.Submit(ctx, res.Actions)
	}
	end := l.o.Now()
	l.o.Metrics.cycle(start, end, err, obs.Previews, res.Actions)
	l.mu.Lock()
	if err == nil {
		l.lastOK = end
	}
	l.mu.Unlock()
	if err != nil {
		l.log.Warn("cycle observed only part of the world; nothing deleted where the observation failed", "err", err)
	} else {
		l.log.Info("cycle", "actions", len(res.Actions), "took", end.Sub(start).Round(time.Millisecond))
	}
	return res, err
}

// RunOnce runs one cycle and waits for its actions (`run --once`).
func (l *Loop) RunOnce(ctx context.Context) error {
	_, err := l.Cycle(ctx)
	if l.ex != nil {
		err = errors.Join(err, l.ex.Wait())
	}
	return err
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
	if _, err := c.AddFunc(fmt.Sprintf("@every %s", l.o.Interval), job); err != nil {
		return fmt.Errorf("scheduling the poll: %w", err)
	}
	if l.o.Resync > 0 {
		if _, err := c.AddFunc(fmt.Sprintf("@every %s", l.o.Resync), func() {
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
	<-ctx.Done()
	<-c.Stop().Done()
	if l.ex != nil {
		_ = l.ex.Wait()
	}
	return nil
}
