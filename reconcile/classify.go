package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

// State is what the planner concludes about one pull request from
// everything observed about it: classify names the state and its reason,
// decide turns the state into actions. A new behaviour is a new state, one
// case in classify and one row in decide.
type State string

// States of an open pull request, in the order classify tests them.
const (
	// StateFiltered: the repository's filters leave the PR alone and it
	// has no preview.
	StateFiltered State = "filtered"
	// StateUnwanted: the filters leave the PR alone (label added, turned
	// draft) but it has a preview: remove it.
	StateUnwanted State = "unwanted"
	// StateClusterUnknown: the cluster could not be read: nothing to do
	// until it can.
	StateClusterUnknown State = "cluster-unknown"
	// StateForeign: a namespace of the preview's name exists and is not
	// this PR's (not previewd's, or another repository's): report it.
	StateForeign State = "foreign"
	// StateBlocked: StateForeign, already reported for this SHA.
	StateBlocked State = "blocked"
	// StateChecksUnknown: the repository waits for checks and they could
	// not be read: nothing is deployed this cycle.
	StateChecksUnknown State = "checks-unknown"
	// StateChecksPending: required checks on the head SHA have not all
	// finished: record the wait and say which on the PR.
	StateChecksPending State = "checks-pending"
	// StateChecksFailed: a required check failed: nothing is deployed
	// until it is re-run and succeeds, or a new commit is pushed.
	StateChecksFailed State = "checks-failed"
	// StateChecksTimeout: the checks did not finish within checks_timeout
	// of the head SHA: not deployed until a new SHA.
	StateChecksTimeout State = "checks-timeout"
	// StateTerminating: the PR's namespace is still being deleted.
	StateTerminating State = "terminating"
	// StateLocked: the release was left pending-* longer than the deploy
	// timeout (a process died mid-operation): unlock, then deploy.
	StateLocked State = "locked"
	// StateBroken: the preview was Ready at the head SHA, but its
	// workloads are not Ready any more: verify (and report what broke).
	StateBroken State = "broken"
	// StateRecovered: the preview failed at the head SHA, its release is
	// deployed at it and its workloads are Ready now: verify, and report
	// it Ready without a new push.
	StateRecovered State = "recovered"
	// StateDrifted: Ready at the head SHA, but the chart or the
	// repository's settings changed since: upgrade.
	StateDrifted State = "drifted"
	// StateInSync: the release is deployed at the head SHA and was Ready.
	StateInSync State = "in-sync"
	// StateUnblocked: the PR was blocked and the foreign namespace is gone.
	StateUnblocked State = "unblocked"
	// StateImageWaiting: the head SHA's image could not be pulled (CI has
	// not pushed it yet); the next look is not due.
	StateImageWaiting State = "image-waiting"
	// StateImageRecheck: waiting for the image, and the next look is due.
	StateImageRecheck State = "image-recheck"
	// StateRetryDue: the last attempt at the head SHA failed and its retry
	// is due.
	StateRetryDue State = "retry-due"
	// StateRetryLater: the last attempt failed; the retry is not due yet.
	StateRetryLater State = "retry-later"
	// StateExhausted: every attempt at the head SHA failed: wait for a new
	// SHA.
	StateExhausted State = "exhausted"
	// StateUnverified: the release is deployed at the head SHA but its
	// readiness was never recorded (a crash, a restart): verify it.
	StateUnverified State = "unverified"
	// StateNew: the PR has no release yet.
	StateNew State = "new"
	// StateNewSHA: the release runs another SHA than the PR's head.
	StateNewSHA State = "new-sha"
)

// States of a pull request missing from the open list.
const (
	// StateClosed: confirmed closed (or merged) and its namespace exists:
	// delete it.
	StateClosed State = "closed"
	// StateGone: confirmed closed, its namespace is already gone, its
	// record is not: mark it deleted.
	StateGone State = "gone"
	// StateStuckTerminating: confirmed closed, its namespace has been
	// terminating and that was reported: wait, do not delete again.
	StateStuckTerminating State = "stuck-terminating"
	// StateForgotten: confirmed closed, nothing left of it.
	StateForgotten State = "forgotten"
	// StateUnconfirmed: missing from the open list but not confirmed
	// closed (the GET failed or says open): keep everything.
	StateUnconfirmed State = "unconfirmed"
)

// States of a preview whose repository is not configured (any more).
const (
	// StateRenamed: the preview is recorded under a repository name that
	// is not configured, and the configured repository with the same
	// GitHub id is its new name (renamed or transferred): move the record
	// and the namespace to the new name, keeping comment and namespace.
	StateRenamed State = "renamed"

	// StateOrphaned: kept and reported until orphan_grace has passed
	// since previewd noticed it (the repository may be configured again).
	StateOrphaned State = "orphaned"
	// StateOrphanExpired: orphan_grace has passed: remove the preview.
	StateOrphanExpired State = "orphan-expired"
)

// rechecksRunning reports the states whose action verifies a release that
// was Ready before (not a deploy of what the plan wants now).
func (s State) rechecksRunning() bool { return s == StateBroken || s == StateRecovered }

// Facts is everything one cycle observed about one pull request.
type Facts struct {
	Repo   string
	Number int
	// Exactly one of PR (open), Closed (confirmed closed) is set, or
	// neither when the PR is Unconfirmed.
	PR          *PR
	Closed      *Closed
	Unconfirmed bool
	// RepoComplete: the repository's open list was read in full.
	RepoComplete bool
	// ClusterComplete: the cluster was read in full.
	ClusterComplete bool
	// Filtered says why the repository's filters leave an open PR alone
	// ("" when it is wanted).
	Filtered string
	// Row is previewd's record of the PR (nil: never seen).
	Row *model.Preview
	// Namespace is where the preview lives (or would).
	Namespace string
	// Owned is the PR's own namespace, when it exists.
	Owned *model.Namespace
	// Foreign: a namespace named Namespace exists and is not this PR's.
	Foreign bool
	// Release is the Helm release in the PR's own namespace.
	Release model.Release
	// Checks is the read of the CI checks on the head SHA, when the
	// repository waits for checks and the SHA has not passed them.
	Checks *ChecksRead
	// Workloads is the observed readiness of the PR's own namespace's
	// workloads, when WorkloadsObserved.
	Workloads         model.Workloads
	WorkloadsObserved bool
	// Fingerprint identifies the chart and settings a deploy would apply
	// now ("" when unknown).
	Fingerprint string
	// Orphaned: the PR's repository is not configured; OrphanedSince is
	// when previewd noticed.
	Orphaned      bool
	OrphanedSince time.Time
	// RenamedFrom is the repository name the PR's record (and namespace)
	// carry when it is Repo's old name (same GitHub id); Row is that
	// record.
	RenamedFrom string
}

// Verdict is a classified pull request.
type Verdict struct {
	State  State
	Reason string
}

// Classify names the state of one pull request. It is pure.
func Classify(f Facts, o Options) Verdict {
	row, rel := f.Row, f.Release
	live := row != nil && row.Status != model.StatusDeleted
	switch {
	case f.RenamedFrom != "" && !f.ClusterComplete:
		return Verdict{StateClusterUnknown, "cluster not observed"}
	case f.RenamedFrom != "":
		return Verdict{StateRenamed, fmt.Sprintf("repository %s is now %s (same GitHub id): preview moved to the new name", f.RenamedFrom, f.Repo)}
	case f.Orphaned:
		removeAt := f.OrphanedSince.Add(o.OrphanGrace)
		switch {
		case !f.ClusterComplete:
			return Verdict{StateClusterUnknown, "cluster not observed"}
		case o.Now.Before(removeAt):
			return Verdict{StateOrphaned, fmt.Sprintf("repository %s is not configured; preview removed at %s unless it is configured again (orphan_grace %s)",
				f.Repo, removeAt.UTC().Format(time.RFC3339), o.OrphanGrace)}
		case f.Owned != nil && f.Owned.Terminating:
			return Verdict{StateTerminating, "repository not configured; namespace terminating"}
		case f.Owned != nil || live:
			return Verdict{StateOrphanExpired, fmt.Sprintf("repository %s is not configured (orphan_grace %s passed)", f.Repo, o.OrphanGrace)}
		default:
			return Verdict{StateForgotten, "repository not configured; nothing left"}
		}
	case f.Unconfirmed:
		return Verdict{StateUnconfirmed, "missing from the open list but not confirmed closed: kept"}
	case f.Closed != nil:
		what := "closed"
		if f.Closed.Merged {
			what = "merged"
		}
		switch {
		case !f.ClusterComplete:
			return Verdict{StateClusterUnknown, "cluster not observed"}
		case f.Owned != nil && f.Owned.Terminating && live && row.Status == model.StatusDeleting && row.LastError != "":
			return Verdict{StateStuckTerminating, "namespace stuck terminating (reported on the PR): " + firstLine(row.LastError)}
		case f.Owned != nil:
			return Verdict{StateClosed, "PR " + what}
		case live:
			return Verdict{StateGone, "PR " + what + "; namespace already gone"}
		default:
			return Verdict{StateForgotten, "PR " + what + "; nothing left"}
		}
	}
	pr := f.PR
	atSHA := live && row.DesiredSHA == pr.SHA
	switch {
	case f.Filtered != "" && f.ClusterComplete && f.RepoComplete && (f.Owned != nil || live):
		return Verdict{StateUnwanted, "not wanted: " + f.Filtered}
	case f.Filtered != "":
		return Verdict{StateFiltered, f.Filtered}
	case !f.ClusterComplete:
		return Verdict{StateClusterUnknown, "cluster not observed"}
	case f.Foreign && atSHA && row.Status == model.StatusBlocked:
		return Verdict{StateBlocked, "namespace exists and is not owned by previewd (reported on the PR)"}
	case f.Foreign:
		return Verdict{StateForeign, "namespace exists and is not owned by previewd"}
	case f.Owned != nil && f.Owned.Terminating:
		return Verdict{StateTerminating, "namespace still terminating; deploy after it is gone"}
	case len(o.Policies[f.Repo].WaitForChecks) > 0 && !passedChecks(row, pr.SHA):
		if v, gated := classifyChecks(f, o); gated {
			return v
		}
	}
	switch {
	case rel.Locked() && o.Now.Sub(rel.Updated) > o.LockStaleAfter:
		return Verdict{StateLocked, fmt.Sprintf("release %s since %s", rel.Status, rel.Updated.UTC().Format(time.RFC3339))}
	case atSHA && row.Status == model.StatusReady && row.DeployedSHA == pr.SHA && rel.DeployedAt(pr.SHA) &&
		f.Owned != nil && f.WorkloadsObserved && !f.Workloads.Ready:
		return Verdict{StateBroken, "workloads not Ready any more: " + f.Workloads.NotReady}
	case atSHA && row.Status == model.StatusReady && row.DeployedSHA == pr.SHA && rel.DeployedAt(pr.SHA) &&
		f.Owned != nil && f.Fingerprint != "" && row.DeployedFingerprint != "" && row.DeployedFingerprint != f.Fingerprint:
		return Verdict{StateDrifted, "configuration changed"}
	case atSHA && row.Status == model.StatusReady && row.DeployedSHA == pr.SHA && rel.DeployedAt(pr.SHA):
		return Verdict{StateInSync, "release deployed at the head SHA and Ready"}
	case atSHA && row.Status == model.StatusFailed && rel.DeployedAt(pr.SHA) && f.Owned != nil && f.WorkloadsObserved && f.Workloads.Ready &&
		(row.NextAttemptAt.IsZero() || o.Now.Before(row.NextAttemptAt)) && row.Attempts <= o.MaxAttempts:
		// One verify past the budget at most: a recovery that does not
		// hold (workloads the observation does not see) is not retried.
		return Verdict{StateRecovered, "workloads Ready now"}
	case live && row.Status == model.StatusBlocked:
		return Verdict{StateUnblocked, "namespace no longer blocked"}
	case atSHA && row.Status == model.StatusWaiting && row.WaitingFor == model.WaitingForImage && o.Now.Before(row.NextAttemptAt):
		return Verdict{StateImageWaiting, fmt.Sprintf("waiting for the image since %s; next look at %s",
			row.WaitingSince.UTC().Format(time.RFC3339), row.NextAttemptAt.UTC().Format(time.RFC3339))}
	case atSHA && row.Status == model.StatusWaiting && row.WaitingFor == model.WaitingForImage:
		return Verdict{StateImageRecheck, "look again for the image (waiting since " + row.WaitingSince.UTC().Format(time.RFC3339) + ")"}
	case atSHA && row.Status == model.StatusFailed && (row.Attempts >= o.MaxAttempts || row.NextAttemptAt.IsZero()):
		if row.Attempts == 0 {
			return Verdict{StateExhausted, "not deployed (" + firstLine(row.LastError) + "); waiting for a new SHA"}
		}
		return Verdict{StateExhausted, fmt.Sprintf("failed after %d attempts (%s); waiting for a new SHA", row.Attempts, firstLine(row.LastError))}
	case atSHA && row.Status == model.StatusFailed && o.Now.Before(row.NextAttemptAt):
		return Verdict{StateRetryLater, "retry at " + row.NextAttemptAt.UTC().Format(time.RFC3339) + " (" + firstLine(row.LastError) + ")"}
	case atSHA && row.Status == model.StatusFailed:
		return Verdict{StateRetryDue, fmt.Sprintf("retry %d of %d", row.Attempts+1, o.MaxAttempts)}
	case rel.DeployedAt(pr.SHA) && f.Owned != nil:
		return Verdict{StateUnverified, "release at SHA; readiness not recorded"}
	case !rel.Exists:
		return Verdict{StateNew, "new preview"}
	default:
		return Verdict{StateNewSHA, "new SHA"}
	}
}

// decide maps a classified pull request to its actions, appended to out;
// a state that calls for none returns a Skip (nil when there is nothing to
// say).
func decide(f Facts, v Verdict, o Options, out []Action) ([]Action, *Skip) {
	act := func(k Kind) Action {
		return Action{Kind: k, State: v.State, Repo: f.Repo, Number: f.Number, Namespace: f.Namespace, Reason: v.Reason, PR: f.PR}
	}
	switch v.State {
	case StateChecksPending, StateChecksFailed, StateChecksTimeout:
		waitingFor, final := model.WaitingForChecks, v.State == StateChecksTimeout
		if v.State == StateChecksFailed {
			waitingFor = model.WaitingForRerun
		}
		if r := f.Row; r != nil && r.DesiredSHA == f.PR.SHA && r.LastError == v.Reason &&
			((!final && r.Status == model.StatusWaiting && r.WaitingFor == waitingFor) || (final && r.Status == model.StatusFailed)) {
			return out, &Skip{Repo: f.Repo, Number: f.Number, State: v.State, Reason: v.Reason} // recorded and reported
		}
		a := act(KindWait)
		a.SHA, a.WaitingFor, a.Final = f.PR.SHA, waitingFor, final
		return append(out, a), nil
	case StateFiltered, StateBlocked, StateTerminating, StateRetryLater, StateExhausted, StateImageWaiting, StateChecksUnknown,
		StateStuckTerminating, StateUnconfirmed, StateOrphaned:
		return out, &Skip{Repo: f.Repo, Number: f.Number, State: v.State, Reason: v.Reason}
	case StateClusterUnknown, StateInSync, StateForgotten:
		return out, nil // the cluster's skip is reported once, not per PR
	case StateUnwanted, StateClosed, StateGone, StateOrphanExpired:
		a := act(KindDelete)
		if f.Owned == nil {
			a.Kind = KindForget
			if v.State == StateUnwanted || v.State == StateOrphanExpired {
				a.Reason += "; namespace already gone"
			}
		} else {
			a.Namespace = f.Owned.Name
		}
		a.PR = nil
		a.FromSHA = f.Release.SHA
		a.Merged = f.Closed != nil && f.Closed.Merged
		return append(out, a), nil
	case StateRenamed:
		a := act(KindRename)
		a.FromRepo, a.PR = f.RenamedFrom, nil
		return append(out, a), nil
	case StateForeign:
		a := act(KindBlocked)
		a.SHA = f.PR.SHA
		return append(out, a), nil
	case StateLocked:
		unlock := act(KindUnlock)
		unlock.SHA, unlock.PR = f.Release.SHA, nil
		d := deployAction(f, v, o, KindDeploy)
		d.Reason = "recover locked release"
		return append(out, unlock, d), nil
	case StateRetryDue, StateImageRecheck:
		kind := KindDeploy
		if f.Release.DeployedAt(f.PR.SHA) && f.Owned != nil {
			kind = KindVerify // the release is applied; only readiness failed
		}
		return append(out, deployAction(f, v, o, kind)), nil
	case StateUnverified, StateBroken, StateRecovered:
		return append(out, deployAction(f, v, o, KindVerify)), nil
	case StateUnblocked, StateNew, StateNewSHA, StateDrifted:
		return append(out, deployAction(f, v, o, KindDeploy)), nil
	}
	panic("reconcile: state without a decision: " + string(v.State))
}

// passedChecks reports a head SHA that got past the checks: its deploy
// started (or the checks timed out) and the record says how it went.
func passedChecks(row *model.Preview, sha string) bool {
	if row == nil || row.DesiredSHA != sha {
		return false
	}
	switch row.Status {
	case model.StatusDeploying, model.StatusReady, model.StatusFailed:
		return true
	case model.StatusWaiting:
		return row.WaitingFor == model.WaitingForImage
	}
	return false
}

// classifyChecks applies wait_for_checks to an open PR whose head SHA has
// not passed them; gated is false when every required check succeeded.
func classifyChecks(f Facts, o Options) (v Verdict, gated bool) {
	p := o.Policies[f.Repo]
	if f.Checks == nil || f.Checks.SHA != f.PR.SHA {
		return Verdict{StateChecksUnknown, "checks on the head SHA not read yet; not deployed"}, true
	}
	if f.Checks.Err != nil {
		return Verdict{StateChecksUnknown, "checks could not be read (" + firstLine(f.Checks.Err.Error()) + "); not deployed"}, true
	}
	failed, waiting := evaluateChecks(p.WaitForChecks, f.Checks.Checks)
	// The timeout counts from the start of the current wait for checks to
	// finish: a failed check re-run later starts a new one.
	since := o.Now
	if r := f.Row; r != nil && r.DesiredSHA == f.PR.SHA && r.Status == model.StatusWaiting && r.WaitingFor == model.WaitingForChecks &&
		!r.WaitingSince.IsZero() {
		since = r.WaitingSince
	}
	switch {
	case len(failed) == 1:
		return Verdict{StateChecksFailed, "not deployed: check " + failed[0] + " failed"}, true
	case len(failed) > 1:
		return Verdict{StateChecksFailed, "not deployed: checks " + strings.Join(failed, ", ") + " failed"}, true
	case len(waiting) > 0 && p.ChecksTimeout > 0 && o.Now.Sub(since) > p.ChecksTimeout:
		return Verdict{StateChecksTimeout, fmt.Sprintf("not deployed: checks did not finish within checks_timeout (%s): %s",
			p.ChecksTimeout, strings.Join(waiting, ", "))}, true
	case len(waiting) > 0:
		return Verdict{StateChecksPending, "Waiting for checks: " + strings.Join(waiting, ", ")}, true
	}
	return Verdict{}, false
}

// evaluateChecks names the required checks that failed, and those not
// finished ("build (in progress)", "lint (not reported yet)"). A name
// reported both as a check run and a status needs both to succeed.
func evaluateChecks(required []string, checks []Check) (failed, waiting []string) {
	names := required
	if slices.Contains(required, "*") {
		names = nil
		for _, c := range checks {
			if !slices.Contains(names, c.Name) {
				names = append(names, c.Name)
			}
		}
		if len(names) == 0 {
			return nil, []string{"none reported yet"}
		}
	}
	for _, name := range names {
		state := ""
		for _, c := range checks {
			if c.Name != name {
				continue
			}
			switch {
			case c.State == "failure":
				state = "failure"
			case state == "failure":
			case !c.Finished():
				state = c.State
			case state == "":
				state = c.State
			}
		}
		switch state {
		case "failure":
			failed = append(failed, name)
		case "success":
		case "":
			waiting = append(waiting, name+" (not reported yet)")
		default:
			waiting = append(waiting, name+" ("+strings.ReplaceAll(state, "_", " ")+")")
		}
	}
	return failed, waiting
}

// deployAction is a deploy or verify of the PR's head SHA, carrying the
// plan's retry schedule: which attempt of the budget it is, and how long
// the retry after a failure waits (0: it is the last).
func deployAction(f Facts, v Verdict, o Options, kind Kind) Action {
	failed := 0
	if f.Row != nil && f.Row.DesiredSHA == f.PR.SHA && f.Row.Status != model.StatusDeleted && f.Row.Status != model.StatusBlocked {
		failed = f.Row.Attempts
	}
	a := Action{Kind: kind, State: v.State, Repo: f.Repo, Number: f.Number, Namespace: f.Namespace,
		SHA: f.PR.SHA, PR: f.PR, Reason: v.Reason, Attempt: failed + 1}
	if kind == KindDeploy {
		a.FromSHA = f.Release.SHA
	}
	// What the deploy applies now; a verify of a release that ran before
	// (broken, recovered) keeps the fingerprint recorded then.
	if !v.State.rechecksRunning() {
		a.Fingerprint = f.Fingerprint
	}
	if a.Attempt < o.MaxAttempts && o.Backoff != nil {
		a.RetryAfter = o.Backoff(a.Attempt)
	}
	if wait := o.Policies[f.Repo].ImageWait; wait > 0 && o.ImageRecheck != nil {
		since := o.Now
		if r := f.Row; r != nil && r.Status == model.StatusWaiting && r.DesiredSHA == f.PR.SHA && r.WaitingFor == model.WaitingForImage {
			since = r.WaitingSince
		}
		a.ImageWaitUntil = since.Add(wait)
		a.ImageRecheckAfter = o.ImageRecheck(o.Now.Sub(since))
	}
	return a
}

func filtered(pr PR, p RepoPolicy) string {
	if pr.Fork && !p.AllowForks {
		if pr.ForkDeleted {
			return "PR from a deleted fork; fork PRs are not deployed (allow_forks: false)"
		}
		return "PR from a fork; fork PRs are not deployed (allow_forks: false)"
	}
	if pr.Draft && p.SkipDrafts {
		return "draft PR (skip_drafts: true)"
	}
	for _, l := range p.IgnoreLabels {
		if slices.Contains(pr.Labels, l) {
			return "has label " + l + " (ignore_labels)"
		}
	}
	for _, l := range p.RequireLabels {
		if !slices.Contains(pr.Labels, l) {
			return "lacks label " + l + " (require_labels)"
		}
	}
	return ""
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
