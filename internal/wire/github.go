package wire

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/gregjones/httpcache"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/previewd/previewd/github"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile"
)

// GitHub adapts github.Client to reconcile.GitHub.
type GitHub struct{ C *github.Client }

var _ reconcile.GitHub = GitHub{}

func newGitHub(_ context.Context, cfg *config.Config, cache httpcache.Cache, reg prometheus.Registerer, log *slog.Logger, spacing *time.Duration, timeout time.Duration) (GitHub, error) {
	o := github.Options{BaseURL: cfg.GitHub.APIURL, Cache: cache, Registerer: reg, Log: log, HTTPTimeout: timeout}
	if spacing != nil {
		o.MutationSpacing = max(*spacing, time.Nanosecond) // 0 would mean the default
		if *spacing == 0 {
			// Tests and benchmarks against the fake: no pacing at all.
			o.WritesPerMinute, o.WritesPerHour = -1, -1
		}
	}
	if a := cfg.GitHub.App; a != nil {
		key, err := os.ReadFile(a.PrivateKeyFile)
		if err != nil {
			return GitHub{}, fmt.Errorf("github.app.private_key_file: %w", err)
		}
		o.App = &github.AppAuth{AppID: a.AppID, InstallationID: a.InstallationID, PrivateKey: key}
	} else {
		o.Token = cfg.Token.Reveal()
	}
	c, err := github.New(o)
	if err != nil {
		return GitHub{}, err
	}
	return GitHub{C: c}, nil
}

func convert(p github.PR) reconcile.PR {
	return reconcile.PR{Number: p.Number, Title: p.Title, Branch: p.Branch, SHA: p.SHA, Author: p.Author,
		Draft: p.Draft, Fork: p.Fork, ForkDeleted: p.ForkDeleted, Labels: p.Labels, RepoID: p.RepoID}
}

// ListOpenPRs returns every open PR of repo.
func (g GitHub) ListOpenPRs(ctx context.Context, repo string) ([]reconcile.PR, error) {
	prs, err := g.C.ListOpenPRs(ctx, repo)
	if errors.Is(err, github.ErrNotFound) || errors.Is(err, github.ErrForbidden) {
		return nil, fmt.Errorf("%w: %w", reconcile.ErrRepoUnreadable, err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]reconcile.PR, len(prs))
	for i, p := range prs {
		out[i] = convert(p)
		out[i].Repo = repo
	}
	return out, nil
}

// GetPR reads one PR's state.
func (g GitHub) GetPR(ctx context.Context, repo string, number int) (reconcile.PR, reconcile.PRState, error) {
	p, err := g.C.GetPR(ctx, repo, number)
	if err != nil {
		return reconcile.PR{}, "", err
	}
	st := reconcile.PROpen
	switch {
	case p.Merged:
		st = reconcile.PRMerged
	case p.State == "closed":
		st = reconcile.PRClosed
	}
	pr := convert(p)
	pr.Repo = repo
	return pr, st, nil
}

// CommitChecks returns the check runs and commit statuses on sha.
func (g GitHub) CommitChecks(ctx context.Context, repo, sha string) ([]reconcile.Check, error) {
	cs, err := g.C.CommitChecks(ctx, repo, sha)
	if err != nil {
		return nil, err
	}
	out := make([]reconcile.Check, len(cs))
	for i, c := range cs {
		out[i] = reconcile.Check{Name: c.Name, State: c.State}
	}
	return out, nil
}

// UpsertComment keeps previewd's one comment on the PR.
func (g GitHub) UpsertComment(ctx context.Context, repo string, number int, marker string, final bool,
	render func() (int64, string, bool)) (int64, bool, error) {
	return g.C.UpsertCommentLatest(ctx, repo, number, marker, final, render)
}

// RepoDir reads a repo: chart's directory at a commit. GitHub unavailable
// or rate limited is a passing failure (kube.Transient): the SHA is tried
// again next cycle rather than failed.
func (g GitHub) RepoDir(ctx context.Context, repo, sha, dir string) (map[string][]byte, error) {
	files, err := g.C.RepoDir(ctx, repo, sha, dir)
	if errors.Is(err, github.ErrUnavailable) || errors.Is(err, github.ErrRateLimited) {
		return nil, kube.Transient(err)
	}
	return files, err
}
