package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

// allStates lists every state; TestClassifyEveryState fails when a state
// has no case (a new state needs a classification test and a decision).
var allStates = []State{StateFiltered, StateUnwanted, StateClusterUnknown, StateForeign, StateBlocked,
	StateTerminating, StateChecksUnknown, StateChecksPending, StateChecksFailed, StateChecksTimeout, StateLocked, StateBroken, StateRecovered, StateDrifted, StateInSync, StateUnblocked, StateImageWaiting, StateImageRecheck, StateRetryDue, StateRetryLater, StateExhausted,
	StateUnverified, StateNew, StateNewSHA, StateClosed, StateGone, StateStuckTerminating, StateForgotten,
	StateUnconfirmed, StateOrphaned, StateOrphanExpired, StateRenamed}

// TestClassifyEveryState: one table row per state, from the facts that
// lead to it to the actions (or the skip) the decision makes of it.
func TestClassifyEveryState(t *testing.T) {
	pr := &PR{Repo: "acme/web", Number: 1, SHA: shaB, Branch: "b"}
	ns := &model.Namespace{Name: "pr-web-1", Repo: "acme/web", Number: 1}
	terminating := &model.Namespace{Name: "pr-web-1", Repo: "acme/web", Number: 1, Terminating: true}
	atA := model.Release{Exists: true, Status: "deployed", SHA: shaA, Updated: now.Add(-time.Hour)}
	atB := model.Release{Exists: true, Status: "deployed", SHA: shaB, Updated: now.Add(-time.Hour)}
	row := func(st model.Status, sha string, mod func(*model.Preview)) *model.Preview {
		p := &model.Preview{Repo: "acme/web", Number: 1, Namespace: "pr-web-1", DesiredSHA: sha, Status: st}
		if mod != nil {
			mod(p)
		}
		return p
	}
	open := func(mod func(*Facts)) Facts {
		f := Facts{Repo: "acme/web", Number: 1, PR: pr, RepoComplete: true, ClusterComplete: true, Namespace: "pr-web-1"}
		mod(&f)
		return f
	}
	ci := func(checks []Check, err error) Facts {
		return Facts{Repo: "acme/ci", Number: 1, PR: &PR{Repo: "acme/ci", Number: 1, SHA: shaB}, RepoComplete: true, ClusterComplete: true,
			Namespace: "pr-ci-1", Checks: &ChecksRead{SHA: shaB, Checks: checks, Err: err}}
	}
	closed := func(mod func(*Facts)) Facts {
		f := Facts{Repo: "acme/web", Number: 1, Closed: &Closed{Number: 1, Merged: true}, RepoComplete: true, ClusterComplete: true, Namespace: "pr-web-1"}
		mod(&f)
		return f
	}
	cases := []struct {
		state State
		facts Facts
		want  string // the decision: actions as `plan` prints them, or "skip: <reason substring>", or "" for nothing
	}{
		{StateFiltered, open(func(f *Facts) { f.Filtered = "draft PR (skip_drafts: true)" }), "skip: draft PR"},
		{StateUnwanted, open(func(f *Facts) { f.Filtered = "has label x (ignore_labels)"; f.Owned = ns; f.Release = atA }),
			"acme/web#1 delete  pr-web-1 aaaaaaa (not wanted: has label x (ignore_labels))"},
		{StateClusterUnknown, open(func(f *Facts) { f.ClusterComplete = false }), ""},
		{StateForeign, open(func(f *Facts) { f.Foreign = true }), "acme/web#1 blocked pr-web-1 bbbbbbb (namespace exists and is not owned by previewd)"},
		{StateBlocked, open(func(f *Facts) { f.Foreign = true; f.Row = row(model.StatusBlocked, shaB, nil) }), "skip: reported on the PR"},
		{StateTerminating, open(func(f *Facts) { f.Owned = terminating }), "skip: terminating"},
		{StateChecksUnknown, ci(nil, errors.New("502 Bad Gateway")), "skip: checks could not be read (502 Bad Gateway)"},
		{StateChecksPending, ci([]Check{{Name: "build", State: "in_progress"}, {Name: "lint", State: "success"}}, nil),
			"acme/ci#1 wait    pr-ci-1 bbbbbbb (Waiting for checks: build (in progress))"},
		{StateChecksFailed, ci([]Check{{Name: "build", State: "failure"}, {Name: "lint", State: "queued"}}, nil),
			"acme/ci#1 wait    pr-ci-1 bbbbbbb (not deployed: check build failed)"},
		{StateChecksTimeout, func() Facts {
			f := ci([]Check{{Name: "lint", State: "success"}}, nil)
			f.Row = &model.Preview{Repo: "acme/ci", Number: 1, DesiredSHA: shaB, Status: model.StatusWaiting, WaitingFor: model.WaitingForChecks,
				SHAFirstSeenAt: now.Add(-2 * time.Hour), WaitingSince: now.Add(-31 * time.Minute)}
			return f
		}(), "acme/ci#1 wait    pr-ci-1 bbbbbbb (not deployed: checks did not finish within checks_timeout (30m0s): build (not reported yet))"},
		{StateLocked, open(func(f *Facts) {
			f.Owned = ns
			f.Release = model.Release{Exists: true, Status: "pending-upgrade", SHA: shaA, Updated: now.Add(-10 * time.Minute)}
		}), "acme/web#1 unlock  pr-web-1 aaaaaaa (release pending-upgrade since 2026-11-26T11:50:00Z)\nacme/web#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (recover locked release) [attempt 1, retry after 1m0s]"},
		{StateInSync, open(func(f *Facts) {
			f.Owned, f.Release = ns, atB
			f.Row = row(model.StatusReady, shaB, func(p *model.Preview) { p.DeployedSHA = shaB })
		}), ""},
		{StateBroken, open(func(f *Facts) {
			f.Owned, f.Release = ns, atB
			f.Workloads, f.WorkloadsObserved = model.Workloads{NotReady: "deployment app: 0 ready"}, true
			f.Row = row(model.StatusReady, shaB, func(p *model.Preview) { p.DeployedSHA = shaB })
		}), "acme/web#1 verify  pr-web-1 bbbbbbb (workloads not Ready any more: deployment app: 0 ready) [attempt 1, retry after 1m0s]"},
		{StateRecovered, open(func(f *Facts) {
			f.Owned, f.Release = ns, atB
			f.Workloads, f.WorkloadsObserved = model.Workloads{Ready: true}, true
			f.Row = row(model.StatusFailed, shaB, func(p *model.Preview) { p.Attempts = 3 })
		}), "acme/web#1 verify  pr-web-1 bbbbbbb (workloads Ready now) [attempt 4, last]"},
		{StateDrifted, open(func(f *Facts) {
			f.Owned, f.Release, f.Fingerprint = ns, atB, "new-fingerprint"
			f.Row = row(model.StatusReady, shaB, func(p *model.Preview) { p.DeployedSHA, p.DeployedFingerprint = shaB, "old-fingerprint" })
		}), "acme/web#1 deploy  pr-web-1 bbbbbbb (configuration changed) [attempt 1, retry after 1m0s]"},
		{StateUnblocked, open(func(f *Facts) { f.Row = row(model.StatusBlocked, shaB, nil) }), "acme/web#1 deploy  pr-web-1 bbbbbbb (namespace no longer blocked) [attempt 1, retry after 1m0s]"},
		{StateImageWaiting, open(func(f *Facts) {
			f.Owned, f.Release = ns, atB
			f.Row = row(model.StatusWaiting, shaB, func(p *model.Preview) {
				p.WaitingFor, p.WaitingSince, p.NextAttemptAt = model.WaitingForImage, now.Add(-time.Minute), now.Add(time.Minute)
			})
		}), "skip: waiting for the image since 2026-11-26T11:59:00Z; next look at 2026-11-26T12:01:00Z"},
		{StateImageRecheck, open(func(f *Facts) {
			f.Owned, f.Release = ns, atB
			f.Row = row(model.StatusWaiting, shaB, func(p *model.Preview) {
				p.WaitingFor, p.WaitingSince, p.NextAttemptAt = model.WaitingForImage, now.Add(-5*time.Minute), now.Add(-time.Second)
			})
		}), "acme/web#1 verify  pr-web-1 bbbbbbb (look again for the image (waiting since 2026-11-26T11:55:00Z)) [attempt 1, retry after 1m0s, image until 2026-11-26T12:10:00Z, recheck 5m0s]"},
		{StateRetryDue, open(func(f *Facts) {
			f.Owned, f.Release = ns, atA
			f.Row = row(model.StatusFailed, shaB, func(p *model.Preview) { p.Attempts, p.NextAttemptAt = 2, now.Add(-time.Second) })
		}), "acme/web#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (retry 3 of 3) [attempt 3, last]"},
		{StateRetryLater, open(func(f *Facts) {
			f.Row = row(model.StatusFailed, shaB, func(p *model.Preview) { p.Attempts, p.NextAttemptAt = 1, now.Add(time.Minute) })
		}), "skip: retry at 2026-11-26T12:01:00Z"},
		{StateExhausted, open(func(f *Facts) {
			f.Row = row(model.StatusFailed, shaB, func(p *model.Preview) { p.Attempts = 3 })
		}), "skip: failed after 3 attempts"},
		{StateUnverified, open(func(f *Facts) { f.Owned, f.Release = ns, atB; f.Row = row(model.StatusDeploying, shaB, nil) }),
			"acme/web#1 verify  pr-web-1 bbbbbbb (release at SHA; readiness not recorded) [attempt 1, retry after 1m0s]"},
		{StateNew, open(func(*Facts) {}), "acme/web#1 deploy  pr-web-1 bbbbbbb (new preview) [attempt 1, retry after 1m0s]"},
		{StateNewSHA, open(func(f *Facts) {
			f.Owned, f.Release = ns, atA
			f.Row = row(model.StatusReady, shaA, func(p *model.Preview) { p.DeployedSHA = shaA })
		}), "acme/web#1 deploy  pr-web-1 aaaaaaa → bbbbbbb (new SHA) [attempt 1, retry after 1m0s]"},
		{StateClosed, closed(func(f *Facts) { f.Owned, f.Release = ns, atA; f.Row = row(model.StatusReady, shaA, nil) }),
			"acme/web#1 delete  pr-web-1 aaaaaaa (PR merged)"},
		{StateGone, closed(func(f *Facts) { f.Row = row(model.StatusDeleting, shaA, nil) }), "acme/web#1 forget  pr-web-1 (PR merged; namespace already gone)"},
		{StateStuckTerminating, closed(func(f *Facts) {
			f.Owned = terminating
			f.Row = row(model.StatusDeleting, shaA, func(p *model.Preview) { p.LastError = "namespace stuck terminating" })
		}), "skip: stuck terminating"},
		{StateForgotten, closed(func(f *Facts) { f.Row = row(model.StatusDeleted, shaA, nil) }), ""},
		{StateUnconfirmed, Facts{Repo: "acme/web", Number: 1, Unconfirmed: true, RepoComplete: true, ClusterComplete: true}, "skip: not confirmed closed"},
		{StateRenamed, open(func(f *Facts) {
			f.Row = row(model.StatusReady, shaA, func(p *model.Preview) { p.Repo = "acme/old-web"; p.Namespace = "pr-old-web-1" })
			f.RenamedFrom, f.Namespace = "acme/old-web", "pr-old-web-1"
		}), "acme/web#1 rename  pr-old-web-1 (repository acme/old-web is now acme/web (same GitHub id): preview moved to the new name)"},
		{StateOrphaned, Facts{Repo: "acme/gone", Number: 1, Orphaned: true, OrphanedSince: now.Add(-59 * time.Minute), ClusterComplete: true, Namespace: "pr-gone-1",
			Owned: &model.Namespace{Name: "pr-gone-1", Repo: "acme/gone", Number: 1}}, "skip: repository acme/gone is not configured; preview removed at 2026-11-26T12:01:00Z"},
		{StateOrphanExpired, Facts{Repo: "acme/gone", Number: 1, Orphaned: true, OrphanedSince: now.Add(-time.Hour), ClusterComplete: true, Namespace: "pr-gone-1",
			Owned: &model.Namespace{Name: "pr-gone-1", Repo: "acme/gone", Number: 1}, Release: atA, Row: &model.Preview{Repo: "acme/gone", Number: 1, Status: model.StatusReady}},
			"acme/gone#1 delete  pr-gone-1 aaaaaaa (repository acme/gone is not configured (orphan_grace 1h0m0s passed))"},
	}
	covered := map[State]bool{}
	for _, tc := range cases {
		t.Run(string(tc.state), func(t *testing.T) {
			o := opts()
			v := Classify(tc.facts, o)
			if v.State != tc.state {
				t.Fatalf("state = %s (%s), want %s", v.State, v.Reason, tc.state)
			}
			covered[v.State] = true
			actions, skip := decide(tc.facts, v, o, nil)
			var got []string
			for _, a := range actions {
				if a.State != tc.state {
					t.Errorf("action %s carries state %s", a, a.State)
				}
				l := a.String()
				if a.Kind == KindDeploy || a.Kind == KindVerify {
					if a.RetryAfter > 0 {
						l += fmt.Sprintf(" [attempt %d, retry after %s", a.Attempt, a.RetryAfter)
					} else {
						l += fmt.Sprintf(" [attempt %d, last", a.Attempt)
					}
					if tc.state == StateImageRecheck {
						l += fmt.Sprintf(", image until %s, recheck %s", a.ImageWaitUntil.UTC().Format(time.RFC3339), a.ImageRecheckAfter)
					}
					l += "]"
				}
				got = append(got, l)
			}
			switch {
			case strings.HasPrefix(tc.want, "skip: "):
				if len(actions) != 0 || skip == nil || !strings.Contains(skip.Reason, strings.TrimPrefix(tc.want, "skip: ")) || skip.State != tc.state {
					t.Errorf("decision = %q, skip %+v; want a skip with %q", got, skip, tc.want)
				}
			default:
				if strings.Join(got, "\n") != tc.want {
					t.Errorf("decision:\n%s\nwant:\n%s", strings.Join(got, "\n"), tc.want)
				}
			}
		})
	}
	for _, s := range allStates {
		if !covered[s] {
			t.Errorf("state %s has no classification test", s)
		}
	}
}

// TestPlanCarriesTheRetrySchedule: the plan, not the executor, owns the
// budget: a first deploy may be retried after Backoff(1), the retry due
// after two failures is the last.
func TestPlanCarriesTheRetrySchedule(t *testing.T) {
	o := opts()
	obs := Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true, Open: []PR{open(1, shaA), open(2, shaA)}}},
		Previews: []model.Preview{{Repo: "acme/web", Number: 2, DesiredSHA: shaA, Status: model.StatusFailed, Attempts: 2, NextAttemptAt: now}},
		Cluster:  model.ClusterObservation{Complete: true}}
	res := Plan(obs, o)
	if len(res.Actions) != 2 {
		t.Fatalf("actions = %q", lines(res))
	}
	first, last := res.Actions[0], res.Actions[1]
	if first.Attempt != 1 || first.RetryAfter != time.Minute || first.State != StateNew {
		t.Errorf("new preview: attempt %d retry after %s state %s", first.Attempt, first.RetryAfter, first.State)
	}
	if last.Attempt != 3 || last.RetryAfter != 0 || last.State != StateRetryDue {
		t.Errorf("third attempt: attempt %d retry after %s state %s", last.Attempt, last.RetryAfter, last.State)
	}
}

// TestChecksGate: once the required checks succeed the PR deploys in the
// same plan; a recorded wait is not planned again; "*" needs every check
// reported; a SHA past the checks is not gated again.
func TestChecksGate(t *testing.T) {
	o := opts()
	pr := &PR{Repo: "acme/ci", Number: 1, SHA: shaB}
	base := Facts{Repo: "acme/ci", Number: 1, PR: pr, RepoComplete: true, ClusterComplete: true, Namespace: "pr-ci-1"}
	f := base
	f.Checks = &ChecksRead{SHA: shaB, Checks: []Check{{Name: "build", State: "success"}, {Name: "lint", State: "success"}, {Name: "other", State: "failure"}}}
	if v := Classify(f, o); v.State != StateNew {
		t.Errorf("required checks green: %s (%s), want new", v.State, v.Reason)
	}
	f.Row = &model.Preview{Repo: "acme/ci", Number: 1, DesiredSHA: shaB, Status: model.StatusWaiting, WaitingFor: model.WaitingForChecks,
		LastError: "Waiting for checks: build (in progress)"}
	f.Checks = &ChecksRead{SHA: shaB, Checks: []Check{{Name: "build", State: "in_progress"}, {Name: "lint", State: "success"}}}
	if acts, skip := decide(f, Classify(f, o), o, nil); len(acts) != 0 || skip == nil || skip.State != StateChecksPending {
		t.Errorf("an unchanged, recorded wait is planned again: %v %+v", acts, skip)
	}
	f.Row.Status = model.StatusReady
	f.Checks = nil
	if v := Classify(f, o); v.State == StateChecksUnknown {
		t.Errorf("a SHA past its checks is gated again: %s", v.Reason)
	}
	o.Policies["acme/ci"] = RepoPolicy{WaitForChecks: []string{"*"}, ChecksTimeout: time.Hour}
	f = base
	f.Checks = &ChecksRead{SHA: shaB}
	if v := Classify(f, o); v.State != StateChecksPending || !strings.Contains(v.Reason, "none reported yet") {
		t.Errorf("\"*\" with no checks: %s (%s)", v.State, v.Reason)
	}
	f.Checks = &ChecksRead{SHA: shaB, Checks: []Check{{Name: "a", State: "success"}, {Name: "b", State: "failure"}}}
	if v := Classify(f, o); v.State != StateChecksFailed || !strings.Contains(v.Reason, "check b failed") {
		t.Errorf("\"*\" with one failure: %s (%s)", v.State, v.Reason)
	}
	f.Checks = &ChecksRead{SHA: shaA, Checks: []Check{{Name: "a", State: "success"}}}
	if v := Classify(f, o); v.State != StateChecksUnknown {
		t.Errorf("checks of another SHA count: %s", v.State)
	}
}

// TestReviewFindings: a blocked PR whose checks failed is not deployed
// once the foreign namespace goes; a re-run long after the SHA was first
// seen is not timed out; a recovery that does not hold is verified once
// past the budget, not every cycle; a preview deployed before fingerprints
// is not upgraded for it.
func TestReviewFindings(t *testing.T) {
	o := opts()
	pr := &PR{Repo: "acme/ci", Number: 1, SHA: shaB}
	f := Facts{Repo: "acme/ci", Number: 1, PR: pr, RepoComplete: true, ClusterComplete: true, Namespace: "pr-ci-1",
		Row:    &model.Preview{Repo: "acme/ci", Number: 1, DesiredSHA: shaB, Status: model.StatusBlocked},
		Checks: &ChecksRead{SHA: shaB, Checks: []Check{{Name: "build", State: "failure"}, {Name: "lint", State: "success"}}}}
	if v := Classify(f, o); v.State != StateChecksFailed {
		t.Errorf("unblocked with a failed check: %s", v.State)
	}
	f.Row = &model.Preview{Repo: "acme/ci", Number: 1, DesiredSHA: shaB, Status: model.StatusWaiting, WaitingFor: model.WaitingForRerun,
		SHAFirstSeenAt: now.Add(-3 * time.Hour), WaitingSince: now.Add(-time.Hour)}
	f.Checks = &ChecksRead{SHA: shaB, Checks: []Check{{Name: "build", State: "queued"}, {Name: "lint", State: "success"}}}
	if v := Classify(f, o); v.State != StateChecksPending {
		t.Errorf("a re-run queued 3 h after the SHA: %s (%s)", v.State, v.Reason)
	}
	ns := &model.Namespace{Name: "pr-web-1", Repo: "acme/web", Number: 1}
	g := Facts{Repo: "acme/web", Number: 1, PR: &PR{Repo: "acme/web", Number: 1, SHA: shaB}, RepoComplete: true, ClusterComplete: true,
		Namespace: "pr-web-1", Owned: ns, Release: model.Release{Exists: true, Status: "deployed", SHA: shaB},
		Workloads: model.Workloads{Ready: true}, WorkloadsObserved: true,
		Row: &model.Preview{Repo: "acme/web", Number: 1, DesiredSHA: shaB, Status: model.StatusFailed, Attempts: o.MaxAttempts + 1}}
	if v := Classify(g, o); v.State == StateRecovered {
		t.Error("a recovery past the budget is verified again")
	}
	g.Row = &model.Preview{Repo: "acme/web", Number: 1, DesiredSHA: shaB, DeployedSHA: shaB, Status: model.StatusReady}
	g.Fingerprint = "now"
	if v := Classify(g, o); v.State != StateInSync {
		t.Errorf("a preview without a recorded fingerprint: %s", v.State)
	}
}

// TestDriftRollsOutAtTheSlotsPace: a configuration change plans at most
// MaxParallel upgrades per cycle; the rest wait, named in the skips.
func TestDriftRollsOutAtTheSlotsPace(t *testing.T) {
	o := opts()
	o.MaxParallel = 2
	o.Digests = map[string]string{"acme/web": "settings-v2"}
	obs := Observation{Repos: []RepoObservation{{Repo: "acme/web", Complete: true}}, Charts: map[string]string{"acme/web": "chart"},
		Cluster: model.ClusterObservation{Complete: true, Owned: map[string]model.Namespace{}, Releases: map[string]model.Release{}}}
	for n := 1; n <= 5; n++ {
		ns := nsFor("acme/web", n)
		obs.Repos[0].Open = append(obs.Repos[0].Open, open(n, shaA))
		obs.Cluster.Owned[ns] = model.Namespace{Name: ns, Repo: "acme/web", Number: n}
		obs.Cluster.Releases[ns] = model.Release{Exists: true, Status: "deployed", SHA: shaA}
		obs.Previews = append(obs.Previews, model.Preview{Repo: "acme/web", Number: n, Namespace: ns, DesiredSHA: shaA, DeployedSHA: shaA,
			Status: model.StatusReady, DeployedFingerprint: "old"})
	}
	res := Plan(obs, o)
	queued := 0
	for _, s := range res.Skipped {
		if s.State == StateDrifted && strings.Contains(s.Reason, "upgrade queued") {
			queued++
		}
	}
	if len(res.Actions) != 2 || queued != 3 {
		t.Fatalf("actions %q, %d queued; want 2 upgrades now and 3 queued", lines(res), queued)
	}
	for _, a := range res.Actions {
		if a.Reason != "configuration changed" || a.Fingerprint != Fingerprint("settings-v2", "chart") {
			t.Errorf("upgrade %s carries fingerprint %q", a, a.Fingerprint)
		}
	}
}
