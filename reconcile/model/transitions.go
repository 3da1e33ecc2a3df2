package model

import (
	"fmt"
	"time"
)

// The transitions of a preview's record. Each is a pure function of the
// current record: the store reads the record under its row lock, calls the
// transition, and writes the result (when it changed) in the same
// transaction, so that a stale writer (an older deploy, a deletion
// overtaken by a reopen) loses with ErrStale instead of overwriting newer
// intent. The store stamps UpdatedAt and CreatedAt.

// Open is one observation of an open pull request.
type Open struct {
	// RepoID is the repository's GitHub id (0: unknown), kept by a new
	// record.
	RepoID    int64
	Namespace string
	Branch    string
	Title     string
	SHA       string
	Now       time.Time
}

// RecordOpen records that the PR is open with head o.SHA, as seen at o.Now,
// and returns the record afterwards and whether it changed. cur is the
// current record; exists is false when previewd never saw the PR.
//
//   - A PR seen for the first time becomes pending at SHA, with
//     SHAFirstSeenAt = Now.
//   - A new head SHA becomes desired: status pending (also from deploying:
//     the executor cancels the older deploy, whose FinishAttempt is then
//     stale), Attempts 0, no retry planned, LastError cleared,
//     SHAFirstSeenAt = Now.
//   - A deleting or deleted preview whose PR is open again (reopened) is
//     revived: pending at SHA, nothing deployed; a deleted one takes the new
//     namespace. An observation not later than ClosedAt does not revive:
//     the closing was seen after it.
//   - Otherwise only the branch and title are updated; the namespace of a
//     live preview never changes.
//
// An observation older than the one that set the current desired SHA (Now
// before SHAFirstSeenAt) changes nothing.
func RecordOpen(cur Preview, exists bool, key Key, o Open) (Preview, bool, error) {
	if o.SHA == "" {
		return cur, false, fmt.Errorf("observing %s: empty SHA", key)
	}
	if !exists {
		return Preview{Repo: key.Repo, RepoID: o.RepoID, Number: key.Number, Namespace: o.Namespace, Branch: o.Branch, Title: o.Title,
			DesiredSHA: o.SHA, Status: StatusPending, SHAFirstSeenAt: o.Now}, true, nil
	}
	next := cur
	switch {
	case cur.Status == StatusDeleting || cur.Status == StatusDeleted:
		if !cur.ClosedAt.IsZero() && !o.Now.After(cur.ClosedAt) {
			return cur, false, nil
		}
		if cur.Status == StatusDeleted {
			next.Namespace = o.Namespace
		}
		next.wantSHA(o.SHA, o.Now)
		next.DeployedSHA, next.DeployStartedAt, next.ReadyAt, next.ClosedAt = "", time.Time{}, time.Time{}, time.Time{}
	case cur.DesiredSHA != o.SHA:
		if o.Now.Before(cur.SHAFirstSeenAt) {
			return cur, false, nil
		}
		next.wantSHA(o.SHA, o.Now)
	case cur.Branch == o.Branch && cur.Title == o.Title:
		return cur, false, nil
	}
	next.Branch, next.Title = o.Branch, o.Title
	return next, true, nil
}

func (p *Preview) wantSHA(sha string, now time.Time) {
	p.DesiredSHA, p.SHAFirstSeenAt = sha, now
	p.Status, p.Attempts, p.NextAttemptAt, p.LastError = StatusPending, 0, time.Time{}, ""
	p.WaitingFor, p.WaitingSince = "", time.Time{}
}

// wants returns ErrStale unless sha is the desired SHA of a preview whose
// PR is not being deleted: the precondition of every write about sha.
func (p Preview) wants(sha string) error {
	if p.DesiredSHA != sha {
		return fmt.Errorf("%w: desired SHA is %s", ErrStale, p.DesiredSHA)
	}
	if p.Status == StatusDeleting || p.Status == StatusDeleted {
		return fmt.Errorf("%w: preview is %s", ErrStale, p.Status)
	}
	return nil
}

// StartAttempt records that a deploy of sha starts at now: the preview
// becomes deploying. It returns ErrStale if sha is not the desired SHA or
// the PR is being deleted.
func StartAttempt(cur Preview, sha string, now time.Time) (Preview, error) {
	if err := cur.wants(sha); err != nil {
		return cur, err
	}
	cur.Status, cur.DeployStartedAt, cur.NextAttemptAt = StatusDeploying, now, time.Time{}
	return cur, nil
}

// Finish is how one deploy attempt ended.
type Finish struct {
	Outcome Outcome
	// Error is the message shown on the PR (already redacted).
	Error string
	// Blocked: the attempt found a namespace of the preview's name that
	// previewd does not own (Outcome is failed). The preview is blocked
	// and uses none of its retry budget.
	Blocked bool
	// NextAttemptAt is when the planner's schedule retries a failure or
	// looks again for what a waiting preview waits for; zero: the budget
	// is used up.
	NextAttemptAt time.Time
	// WaitingFor is what an OutcomeWaiting attempt found missing.
	WaitingFor string
	// Fingerprint identifies what a Ready attempt deployed ("": the
	// attempt applied nothing, the record keeps its fingerprint).
	Fingerprint string
}

// FinishAttempt records how an attempt at sha ended, at now. If sha is
// still desired and the preview is deploying, the preview follows the
// outcome: ready → deployed at sha, ReadyAt = now, LastError cleared, the
// budget restored;
// failed → Attempts + 1, LastError, a retry at NextAttemptAt (or blocked);
// waiting → waiting for f.WaitingFor (since the first such outcome in a
// row), no budget used, a look again at NextAttemptAt; cancelled → pending
// again (a wait in progress is forgotten: the next look starts it anew). Otherwise it returns ErrStale: the attempt's
// result no longer matters to the preview.
func FinishAttempt(cur Preview, sha string, f Finish, now time.Time) (Preview, error) {
	switch f.Outcome {
	case OutcomeReady, OutcomeFailed, OutcomeCancelled:
	case OutcomeWaiting:
		if f.WaitingFor == "" {
			return cur, fmt.Errorf("outcome %q without what it waits for", f.Outcome)
		}
	default:
		return cur, fmt.Errorf("unknown outcome %q", f.Outcome)
	}
	if cur.DesiredSHA != sha {
		return cur, fmt.Errorf("%w: desired SHA is now %s", ErrStale, cur.DesiredSHA)
	}
	if cur.Status != StatusDeploying {
		return cur, fmt.Errorf("%w: preview is %s", ErrStale, cur.Status)
	}
	waitingSince := cur.WaitingSince
	if cur.WaitingFor != f.WaitingFor || waitingSince.IsZero() {
		waitingSince = now
	}
	cur.WaitingFor, cur.WaitingSince = "", time.Time{}
	switch {
	case f.Outcome == OutcomeReady:
		cur.Status, cur.DeployedSHA, cur.ReadyAt, cur.LastError, cur.NextAttemptAt = StatusReady, sha, now, "", time.Time{}
		cur.Attempts = 0         // a later breakage starts a fresh budget
		if f.Fingerprint != "" { // a verify keeps what the release was made of
			cur.DeployedFingerprint = f.Fingerprint
		}
	case f.Outcome == OutcomeWaiting:
		msg := f.Error
		if waitingSince.Before(now) && cur.LastError != "" {
			// Still waiting for the same thing: keep the first message, so
			// that the PR comment is not rewritten on every look (a
			// kubelet alternates ErrImagePull and ImagePullBackOff).
			msg = cur.LastError
		}
		cur.Status, cur.LastError, cur.NextAttemptAt = StatusWaiting, msg, f.NextAttemptAt
		cur.WaitingFor, cur.WaitingSince = f.WaitingFor, waitingSince
	case f.Outcome == OutcomeFailed && f.Blocked:
		cur.Status, cur.LastError, cur.NextAttemptAt = StatusBlocked, f.Error, time.Time{}
	case f.Outcome == OutcomeFailed:
		cur.Status, cur.LastError, cur.NextAttemptAt = StatusFailed, f.Error, f.NextAttemptAt
		cur.Attempts++
	default:
		cur.Status, cur.NextAttemptAt = StatusPending, time.Time{}
	}
	return cur, nil
}

// Hold records that the preview at sha waits, before any deploy attempt,
// for what waitingFor names (msg says what exactly, e.g. which checks); a
// final hold (the checks did not finish in time) fails the SHA instead: no
// attempt, no retry, until a new SHA. It returns ErrStale if sha is not
// desired or the PR is being deleted.
func Hold(cur Preview, sha, waitingFor, msg string, final bool, now time.Time) (Preview, error) {
	if err := cur.wants(sha); err != nil {
		return cur, err
	}
	if final {
		cur.Status, cur.LastError, cur.NextAttemptAt = StatusFailed, msg, time.Time{}
		cur.WaitingFor, cur.WaitingSince = "", time.Time{}
		return cur, nil
	}
	if cur.Status != StatusWaiting || cur.WaitingFor != waitingFor || cur.WaitingSince.IsZero() {
		cur.WaitingSince = now
	}
	cur.Status, cur.WaitingFor, cur.LastError, cur.NextAttemptAt = StatusWaiting, waitingFor, msg, time.Time{}
	return cur, nil
}

// Block records that a namespace of the preview's name exists and is not
// previewd's: the preview at sha is blocked, msg says why. It returns
// ErrStale if sha is not desired or the PR is being deleted.
func Block(cur Preview, sha, msg string) (Preview, error) {
	if err := cur.wants(sha); err != nil {
		return cur, err
	}
	cur.Status, cur.LastError, cur.NextAttemptAt = StatusBlocked, msg, time.Time{}
	cur.WaitingFor, cur.WaitingSince = "", time.Time{}
	return cur, nil
}

// MarkDeleting records that the PR was confirmed closed at now (or is no
// longer wanted) and its namespace is being deleted. A preview already
// deleting does not change; a deleted one becomes deleting again (its
// namespace was found again).
func MarkDeleting(cur Preview, now time.Time) (Preview, bool) {
	if cur.Status == StatusDeleting {
		return cur, false
	}
	cur.Status, cur.NextAttemptAt = StatusDeleting, time.Time{}
	if cur.ClosedAt.IsZero() {
		cur.ClosedAt = now
	}
	return cur, true
}

// MarkDeleted records that the PR's namespace is gone: nothing is deployed
// any more. It returns ErrStale unless the preview is deleting (it was
// reopened meanwhile) or already deleted (then nothing changes).
func MarkDeleted(cur Preview) (Preview, bool, error) {
	switch cur.Status {
	case StatusDeleted:
		return cur, false, nil
	case StatusDeleting:
	default:
		return cur, false, fmt.Errorf("%w: preview is %s", ErrStale, cur.Status)
	}
	cur.Status, cur.DeployedSHA, cur.ReadyAt, cur.NextAttemptAt = StatusDeleted, "", time.Time{}, time.Time{}
	cur.DeployedFingerprint = ""
	return cur, true, nil
}
