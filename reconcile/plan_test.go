package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

const (
	shaA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	shaB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func nsFor(repo string, n int) string {
	return fmt.Sprintf("pr-%s-%d", repo[strings.Index(repo, "/")+1:], n)
}

func opts() Options {
	return Options{Now: now, MaxAttempts: 3, LockStaleAfter: 3 * time.Minute, NamespaceFor: nsFor,
		Backoff: func(n int) time.Duration { return time.Duration(n) * time.Minute }, Policies: map[string]RepoPolicy{"acme/web": {ImageWait: 15 * time.Minute},
			"acme/ci": {WaitForChecks: []string{"build", "lint"}, ChecksTimeout: 30 * time.Minute}},
		ImageRecheck: func(waited time.Duration) time.Duration { return max(waited, 15*time.Second) }, OrphanGrace: time.Hour}
}

func open(n int, sha string) PR {
	return PR{Repo: "acme/web", Number: n, SHA: sha, Branch: "b", Title: "t"}
}

func owned(ns ...string) map[string]model.Namespace {
	m := map[string]model.Namespace{}
	for _, n := range ns {
		var num int
		fmt.Sscanf(n[strings.LastIndex(n, "-")+1:], "%d", &num)
		m[n] = model.Namespace{Name: n, Repo: "acme/web", Number: num}
	}
	return m
}

func ready(n int, sha string) model.Preview {
	return model.Preview{Repo: "acme/web", Number: n, Namespace: nsFor("acme/web", n), DesiredSHA: sha, DeployedSHA: sha, Status: model.StatusReady, Attempts: 1}
}

func lines(r Result) []string {
	var out []string
	for _, a := range r.Actions {
		out = append(out, a.String())
	}
	return out
}

func TestPlan(t *testing.T) {
	deployed := func(sha string) model.Release {
		return model.Release{Exists: true, Status: "deployed", SHA: sha, Updated: now.Add(-time.Hour)}
	}
	cases := []struct {
		name string
		obs  Observation
		opt  func(*Options)
		want []string
		skip string // a substring one Skip must carry
	}{
		{
			name: "new PR is deployed",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Cluster: model.ClusterObservation{Complete: true}},
			want: []string{"acme/web#1 deploy  pr-web-1 aaaaaaa (new preview)"},
		},
		{
			name: "in sync plans nothing",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: nil,
		},
		{
			name: "push upgrades from the old SHA",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaB)}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: []string{"acme/web#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (new SHA)"},
		},
		{
			name: "confirmed closed deletes, merged says so",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Closed: []Closed{{Number: 1, Merged: true}}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: []string{"acme/web#1 delete  pr-web-1 aaaaaaa (PR merged)"},
		},
		{
			name: "incomplete GitHub answer deletes nothing",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: false, Err: errors.New("502"), Closed: []Closed{{Number: 1}}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1")}},
			want: nil,
			skip: "no deletion planned",
		},
		{
			name: "unconfirmed disappearance keeps the preview",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Unconfirmed: []int{1}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1")}},
			want: nil,
			skip: "not confirmed closed",
		},
		{
			name: "cluster unreadable changes nothing",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(2, shaA)}, Closed: []Closed{{Number: 1}}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: false, Err: errors.New("connection refused")}},
			want: nil,
			skip: "cluster not observed",
		},
		{
			name: "foreign namespace is reported, never adopted",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Cluster: model.ClusterObservation{Complete: true, Foreign: map[string]bool{"pr-web-1": true}}},
			want: []string{"acme/web#1 blocked pr-web-1 aaaaaaa (namespace exists and is not owned by previewd)"},
		},
		{
			name: "foreign namespace already reported stays quiet",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaA, Status: model.StatusBlocked, LastError: "not owned"}},
				Cluster:  model.ClusterObservation{Complete: true, Foreign: map[string]bool{"pr-web-1": true}}},
			want: nil,
		},
		{
			name: "stale pending release is unlocked then deployed",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaB)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaB, Status: model.StatusDeploying, Attempts: 1}},
				Cluster: model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"),
					Releases: map[string]model.Release{"pr-web-1": {Exists: true, Status: "pending-upgrade", SHA: shaA, Updated: now.Add(-10 * time.Minute)}}}},
			want: []string{
				"acme/web#1 unlock  pr-web-1 aaaaaaa (release pending-upgrade since 2026-11-26T11:50:00Z)",
				"acme/web#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (recover locked release)",
			},
		},
		{
			name: "failed three times waits for a new SHA",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaA, Status: model.StatusFailed, Attempts: 3}},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: nil,
			skip: "failed after 3 attempts",
		},
		{
			name: "failed with a retry due is retried",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaA, Status: model.StatusFailed, Attempts: 1, NextAttemptAt: now.Add(-time.Second)}},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: []string{"acme/web#1 verify  pr-web-1 aaaaaaa (retry 2 of 3)"},
		},
		{
			name: "a retry whose release is not applied runs Helm again",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaB)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaB, Status: model.StatusFailed, Attempts: 1, NextAttemptAt: now.Add(-time.Second)}},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: []string{"acme/web#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (retry 2 of 3)"},
		},
		{
			name: "a PR blocked by a foreign namespace deploys once it is gone",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaA, Status: model.StatusBlocked,
					LastError: "namespace pr-web-1 already exists and is not managed by previewd"}},
				Cluster: model.ClusterObservation{Complete: true}},
			want: []string{"acme/web#1 deploy  pr-web-1 aaaaaaa (namespace no longer blocked)"},
		},
		{
			name: "an owned namespace of another repository with the same name is foreign",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Cluster: model.ClusterObservation{Complete: true, Owned: map[string]model.Namespace{"pr-web-1": {Name: "pr-web-1", Repo: "other/web", Number: 1}},
					Releases: map[string]model.Release{"pr-web-1": {Exists: true, Status: "pending-install", Updated: now.Add(-time.Hour)}}}},
			want: []string{"acme/web#1 blocked pr-web-1 aaaaaaa (namespace exists and is not owned by previewd)"},
		},
		{
			name: "a namespace reported stuck terminating is not deleted again every cycle",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Closed: []Closed{{Number: 1}}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", Status: model.StatusDeleting, LastError: "namespace stuck terminating"}},
				Cluster:  model.ClusterObservation{Complete: true, Owned: map[string]model.Namespace{"pr-web-1": {Name: "pr-web-1", Repo: "acme/web", Number: 1, Terminating: true}}}},
			want: nil,
			skip: "stuck terminating",
		},
		{
			name: "failed with a retry not yet due waits",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaA, Status: model.StatusFailed, Attempts: 1, NextAttemptAt: now.Add(time.Second)}},
				Cluster:  model.ClusterObservation{Complete: true}},
			want: nil,
			skip: "retry at",
		},
		{
			name: "release at SHA but readiness unrecorded is verified, not redeployed",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, DesiredSHA: shaA, Status: model.StatusDeploying, Attempts: 1}},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			want: []string{"acme/web#1 verify  pr-web-1 aaaaaaa (release at SHA; readiness not recorded)"},
		},
		{
			name: "fork PRs are not deployed by default",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{{Repo: "acme/web", Number: 3, SHA: shaA, Fork: true, ForkDeleted: true}}}},
				Cluster: model.ClusterObservation{Complete: true}},
			want: nil,
			skip: "deleted fork",
		},
		{
			name: "fork PRs are deployed when allowed",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{{Repo: "acme/web", Number: 3, SHA: shaA, Fork: true}}}},
				Cluster: model.ClusterObservation{Complete: true}},
			opt:  func(o *Options) { o.Policies["acme/web"] = RepoPolicy{AllowForks: true} },
			want: []string{"acme/web#3 deploy  pr-web-3 aaaaaaa (new preview)"},
		},
		{
			name: "ignored label on a running preview removes it",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{{Repo: "acme/web", Number: 1, SHA: shaA, Labels: []string{"no-preview"}}}}},
				Previews: []model.Preview{ready(1, shaA)},
				Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": deployed(shaA)}}},
			opt:  func(o *Options) { o.Policies["acme/web"] = RepoPolicy{IgnoreLabels: []string{"no-preview"}} },
			want: []string{"acme/web#1 delete  pr-web-1 aaaaaaa (not wanted: has label no-preview (ignore_labels))"},
		},
		{
			name: "closed PR whose namespace is gone is forgotten",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Closed: []Closed{{Number: 1}}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", Status: model.StatusDeleting}},
				Cluster:  model.ClusterObservation{Complete: true}},
			want: []string{"acme/web#1 forget  pr-web-1 (PR closed; namespace already gone)"},
		},
		{
			name: "deleted row of a closed PR plans nothing",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Closed: []Closed{{Number: 1}}}},
				Previews: []model.Preview{{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", Status: model.StatusDeleted}},
				Cluster:  model.ClusterObservation{Complete: true}},
			want: nil,
		},
		{
			name: "namespace terminating waits before redeploying",
			obs: Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
				Cluster: model.ClusterObservation{Complete: true, Owned: map[string]model.Namespace{"pr-web-1": {Name: "pr-web-1", Repo: "acme/web", Number: 1, Terminating: true}}}},
			want: nil,
			skip: "terminating",
		},
		{
			name: "actions are sorted by repo, PR and kind",
			obs: Observation{Repos: []RepoObservation{
				{Repo: "zeta/api", Complete: true, Open: []PR{{Repo: "zeta/api", Number: 1, SHA: shaA}}},
				{Repo: "acme/web", Complete: true, Open: []PR{open(10, shaA), open(2, shaB)}, Closed: []Closed{{Number: 5}}},
			}, Cluster: model.ClusterObservation{Complete: true, Owned: owned("pr-web-5")}},
			opt: func(o *Options) { o.Policies["zeta/api"] = RepoPolicy{} },
			want: []string{
				"acme/web#2 deploy  pr-web-2 bbbbbbb (new preview)",
				"acme/web#5 delete  pr-web-5 (PR closed)",
				"acme/web#10 deploy  pr-web-10 aaaaaaa (new preview)",
				"zeta/api#1 deploy  pr-api-1 aaaaaaa (new preview)",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := opts()
			if tc.opt != nil {
				tc.opt(&o)
			}
			res := Plan(tc.obs, o)
			got := lines(res)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if tc.skip != "" {
				found := false
				for _, s := range res.Skipped {
					found = found || strings.Contains(s.Reason, tc.skip)
				}
				if !found {
					t.Errorf("no skip mentions %q: %+v", tc.skip, res.Skipped)
				}
			}
		})
	}
}

func TestPlanCommentRepair(t *testing.T) {
	o := opts()
	o.CommentHash = func(p model.Preview) string { return "h-" + string(p.Status) }
	row := ready(1, shaA)
	row.CommentHash = "h-failed"
	obs := Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA)}}},
		Previews: []model.Preview{row},
		Cluster:  model.ClusterObservation{Complete: true, Owned: owned("pr-web-1"), Releases: map[string]model.Release{"pr-web-1": {Exists: true, Status: "deployed", SHA: shaA}}}}
	got := lines(Plan(obs, o))
	if len(got) != 1 || !strings.Contains(got[0], "comment") {
		t.Fatalf("want one comment action, got %q", got)
	}
	obs.Previews[0].CommentHash = "h-ready"
	if got := lines(Plan(obs, o)); len(got) != 0 {
		t.Fatalf("comment up to date: want no action, got %q", got)
	}
}

func TestPlanIsPure(t *testing.T) {
	obs := Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA), open(2, shaB)}, Closed: []Closed{{Number: 3}}}},
		Cluster: model.ClusterObservation{Complete: true, Owned: owned("pr-web-3")}}
	a, b := lines(Plan(obs, opts())), lines(Plan(obs, opts()))
	if strings.Join(a, "|") != strings.Join(b, "|") || len(a) != 3 {
		t.Fatalf("same input, different plans or wrong count: %q vs %q", a, b)
	}
}

// TestPlanOrphans: previews (records, namespaces) of a repository that is
// not configured are kept and reported during orphan_grace, their comments
// not repaired; then removed. A case change of a configured name is not an
// orphan (names are compared in lower case by the configuration's fold).
func TestPlanOrphans(t *testing.T) {
	o := opts()
	o.CommentHash = func(model.Preview) string { return "new-hash" }
	obs := Observation{
		Previews: []model.Preview{
			{Repo: "acme/gone", Number: 1, Namespace: "pr-gone-1", Status: model.StatusReady, CommentHash: "old"},
			{Repo: "acme/gone", Number: 2, Namespace: "pr-gone-2", Status: model.StatusFailed, CommentHash: "old"},
			{Repo: "acme/web", Number: 3, Namespace: "pr-web-3", Status: model.StatusReady, CommentHash: "old"},
		},
		Cluster: model.ClusterObservation{Complete: true, Owned: map[string]model.Namespace{
			"pr-gone-1": {Name: "pr-gone-1", Repo: "acme/gone", Number: 1},
			"pr-old-9":  {Name: "pr-old-9", Repo: "acme/old", Number: 9},
		}},
		Repos:       []RepoObservation{{Repo: "acme/web", Complete: true, Unconfirmed: []int{3}}},
		OrphanSince: map[string]time.Time{"acme/gone": now.Add(-10 * time.Minute)},
	}
	if got := OrphanedRepos(obs, o.Policies); fmt.Sprint(got) != "[acme/gone acme/old]" {
		t.Errorf("OrphanedRepos = %v", got)
	}
	res := Plan(obs, o)
	if len(res.Actions) != 1 || res.Actions[0].Repo != "acme/web" || res.Actions[0].Kind != KindComment {
		t.Errorf("within the grace: actions %q, want only acme/web#3's comment repair", lines(res))
	}
	orphaned := 0
	for _, s := range res.Skipped {
		if s.State == StateOrphaned {
			orphaned++
		}
	}
	if orphaned != 3 {
		t.Errorf("orphaned skips = %d, want 3: %+v", orphaned, res.Skipped)
	}
	// acme/old has no OrphanSince: noticed just now, its grace starts.
	o.Now = now.Add(time.Hour)
	res = Plan(obs, o)
	want := "acme/gone#1 delete  pr-gone-1 (repository acme/gone is not configured (orphan_grace 1h0m0s passed))\n" +
		"acme/gone#2 forget  pr-gone-2 (repository acme/gone is not configured (orphan_grace 1h0m0s passed); namespace already gone)\n" +
		"acme/web#3 comment pr-web-3 (comment out of date)"
	if got := strings.Join(lines(res), "\n"); got != want {
		t.Errorf("after the grace:\n%s\nwant:\n%s", got, want)
	}
}

// TestLockStaleAfterOutlastsHelm: a deploy_timeout shorter than a Helm
// operation does not let a new leader take over a release whose operation
// may still be running.
func TestLockStaleAfterOutlastsHelm(t *testing.T) {
	s := Settings{DeployTimeout: 10 * time.Second, HelmTimeout: 2 * time.Minute}
	if got := s.LockStaleAfter(); got <= 2*time.Minute {
		t.Errorf("LockStaleAfter = %s with a 2m Helm timeout", got)
	}
	s.DeployTimeout = 10 * time.Minute
	if got := s.LockStaleAfter(); got != 10*time.Minute {
		t.Errorf("LockStaleAfter = %s, want deploy_timeout when longer", got)
	}
	o := opts()
	o.LockStaleAfter = Settings{DeployTimeout: 10 * time.Second, HelmTimeout: 2 * time.Minute}.LockStaleAfter()
	f := Facts{Repo: "acme/web", Number: 1, PR: &PR{Repo: "acme/web", Number: 1, SHA: shaB}, RepoComplete: true, ClusterComplete: true,
		Namespace: "pr-web-1", Owned: &model.Namespace{Name: "pr-web-1", Repo: "acme/web", Number: 1},
		Release: model.Release{Exists: true, Status: "pending-upgrade", SHA: shaA, Updated: now.Add(-time.Minute)}}
	if v := Classify(f, o); v.State == StateLocked {
		t.Errorf("a release pending for 1m (Helm may still run) is taken over: %s", v.Reason)
	}
}

// TestPlanRenamedRepository: the configuration names a repository by its
// new name (renamed or transferred: same GitHub id). The previews recorded
// under the old name are moved, keeping their namespace and comment, and
// nothing is deployed or orphaned for them; once moved, a push upgrades
// the preview in the namespace it already has.
func TestPlanRenamedRepository(t *testing.T) {
	o := opts()
	o.Policies = map[string]RepoPolicy{"acme/shop": {}}
	o.CommentHash = func(p model.Preview) string { return "h-" + p.Repo }
	const id = 4242
	shop := func(n int, sha string) PR {
		return PR{Repo: "acme/shop", Number: n, SHA: sha, Branch: "b", Title: "t", RepoID: id}
	}
	old := func(n int) model.Preview {
		p := ready(n, shaA)
		p.RepoID, p.CommentID, p.CommentHash = id, int64(100+n), "h-acme/web"
		return p
	}
	deployed := model.Release{Exists: true, Status: "deployed", SHA: shaA, Updated: now.Add(-time.Hour)}
	obs := Observation{
		Repos:    []RepoObservation{{Repo: "acme/shop", Complete: true, Open: []PR{shop(1, shaA), shop(5, shaA)}}},
		Previews: []model.Preview{old(1), old(2)},
		Cluster: model.ClusterObservation{Complete: true, Owned: owned("pr-web-1", "pr-web-2"),
			Releases: map[string]model.Release{"pr-web-1": deployed, "pr-web-2": deployed}},
	}
	res := Plan(obs, o)
	want := "acme/shop#1 rename  pr-web-1 (repository acme/web is now acme/shop (same GitHub id): preview moved to the new name)\n" +
		"acme/shop#2 rename  pr-web-2 (repository acme/web is now acme/shop (same GitHub id): preview moved to the new name)\n" +
		"acme/shop#5 deploy  pr-shop-5 aaaaaaa (new preview)"
	if got := strings.Join(lines(res), "\n"); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	for _, a := range res.Actions {
		if a.Kind == KindRename && a.FromRepo != "acme/web" {
			t.Errorf("%s: FromRepo %q, want acme/web", a, a.FromRepo)
		}
	}
	for _, s := range res.Skipped {
		if s.State == StateOrphaned {
			t.Errorf("a renamed preview is reported orphaned: %+v", s)
		}
	}
	if len(res.RepoIDs) != 0 {
		t.Errorf("RepoIDs = %v: no record of acme/shop lacks its id", res.RepoIDs)
	}

	// Without the id (records from before it was kept) the old name's
	// previews are orphans and the new name's are new: what happened
	// before, and what happens when the ids differ (another repository).
	unknown := obs
	unknown.Previews = []model.Preview{ready(1, shaA), ready(2, shaA)}
	if got := lines(Plan(unknown, o)); len(got) != 2 || !strings.Contains(got[0], "acme/shop#1 deploy  pr-shop-1") {
		t.Errorf("without ids: %q, want acme/shop#1 and #5 deployed", got)
	}

	// The new name already has a live record of #1: that one stays, the
	// old one is an orphan.
	clash := obs
	clash.Previews = []model.Preview{old(1), {Repo: "acme/shop", Number: 1, Namespace: "pr-shop-1", DesiredSHA: shaA, Status: model.StatusPending}}
	res = Plan(clash, o)
	for _, a := range res.Actions {
		if a.Kind == KindRename && a.Number == 1 {
			t.Errorf("renamed onto a live record: %s", a)
		}
	}
	if res.RepoIDs["acme/shop"] != id {
		t.Errorf("RepoIDs = %v, want acme/shop: %d (its record lacks the id)", res.RepoIDs, id)
	}

	// Moved: the record and namespace carry the new name and keep the
	// old namespace; in sync, and a push upgrades there.
	moved := func(n int) model.Preview {
		p := old(n)
		p.Repo = "acme/shop"
		return p
	}
	after := Observation{
		Repos:    []RepoObservation{{Repo: "acme/shop", Complete: true, Open: []PR{shop(1, shaB)}}},
		Previews: []model.Preview{moved(1)},
		Cluster: model.ClusterObservation{Complete: true,
			Owned:    map[string]model.Namespace{"pr-web-1": {Name: "pr-web-1", Repo: "acme/shop", Number: 1}},
			Releases: map[string]model.Release{"pr-web-1": deployed}},
	}
	o.CommentHash = func(p model.Preview) string { return p.CommentHash }
	if got := strings.Join(lines(Plan(after, o)), "\n"); got != "acme/shop#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (new SHA)" {
		t.Errorf("after the move: %q, want the push deployed into pr-web-1", got)
	}

	// Interrupted after the namespace moved, before the record: the
	// rename is planned again (and is idempotent).
	half := after
	half.Previews = []model.Preview{old(1)}
	if got := lines(Plan(half, o)); len(got) != 1 || !strings.HasPrefix(got[0], "acme/shop#1 rename  pr-web-1") {
		t.Errorf("half-moved: %q, want the rename again", got)
	}
}
