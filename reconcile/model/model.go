// Package model is the vocabulary that previewd's planner shares with its
// edges: a preview's record and its pure state transitions (transitions.go),
// its deploy attempts, and what the cluster holds (namespaces, Helm
// releases). It does no I/O and reads no clock: the store applies the
// transitions under its row lock, the planner reads the records, and kube
// reports the cluster in these terms.
package model

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors, returned wrapped: test them with errors.Is.
var (
	// ErrNotFound: no preview (or attempt) with that key.
	ErrNotFound = errors.New("not found")
	// ErrStale: the write was based on state that has moved on (a newer SHA
	// is desired, the PR is being deleted, a newer attempt started, the
	// attempt was already finished). The record was left as it was.
	ErrStale = errors.New("stale write")
	// ErrNotOwned: a namespace of the preview's name exists and does not
	// carry previewd's ownership labels for this instance (or belongs to
	// another pull request). It is never adopted and never deleted.
	ErrNotOwned = errors.New("namespace not owned by this previewd instance")
	// ErrLocked: the release's last revision is pending-install,
	// pending-upgrade, pending-rollback or uninstalling: an operation is
	// under way, or a process died in the middle of one.
	ErrLocked = errors.New("release locked by an unfinished operation")
)

// Status is where a preview is in its life.
type Status string

// Statuses. Pending: wants a deploy of DesiredSHA. Deploying: an attempt
// is in flight. Ready: DesiredSHA is deployed. Failed: the last attempt
// failed; NextAttemptAt says when to retry (zero: do not). Blocked: a
// namespace of the preview's name exists and is not previewd's; nothing is
// tried until it is gone. Waiting: the preview waits for something outside
// previewd (WaitingFor: the image CI has not pushed yet); NextAttemptAt says
// when previewd looks again. Deleting: the PR is closed and its namespace is
// going. Deleted: the namespace is gone.
const (
	StatusPending   Status = "pending"
	StatusDeploying Status = "deploying"
	StatusReady     Status = "ready"
	StatusFailed    Status = "failed"
	StatusBlocked   Status = "blocked"
	StatusWaiting   Status = "waiting"
	StatusDeleting  Status = "deleting"
	StatusDeleted   Status = "deleted"
)

// LiveStatuses are the statuses of a preview whose PR is (as far as
// previewd knows) open or whose namespace still exists, in display order.
var LiveStatuses = []Status{StatusPending, StatusDeploying, StatusWaiting, StatusReady, StatusFailed, StatusBlocked, StatusDeleting}

// Outcome is how a deploy attempt ended.
type Outcome string

// Outcomes.
const (
	OutcomeReady     Outcome = "ready"
	OutcomeFailed    Outcome = "failed"
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeWaiting: the attempt found something outside previewd not
	// there yet (the image): not a failure, no budget used.
	OutcomeWaiting Outcome = "waiting"
)

// What a waiting preview waits for (Preview.WaitingFor).
const (
	// WaitingForImage: the preview's own image at the head SHA cannot be
	// pulled yet (CI has not pushed it).
	WaitingForImage = "image"
	// WaitingForChecks: the repository's required checks on the head SHA
	// have not all succeeded yet (wait_for_checks).
	WaitingForChecks = "checks"
	// WaitingForRerun: a required check failed: nothing is deployed until
	// it is re-run and succeeds, or a new commit is pushed.
	WaitingForRerun = "check-rerun"
)

// Key names a pull request.
type Key struct {
	Repo   string // owner/name
	Number int
}

func (k Key) String() string { return fmt.Sprintf("%s#%d", k.Repo, k.Number) }

// Preview is previewd's memory of one pull request. Zero times mean "not
// set".
type Preview struct {
	Repo string
	// RepoID is GitHub's id of the repository (0: not known yet): it does
	// not change when the repository is renamed or transferred.
	RepoID      int64
	Number      int
	Namespace   string
	Branch      string
	Title       string
	DesiredSHA  string // head SHA of the open PR
	DeployedSHA string // SHA of the last successful deploy; "" after deletion
	// DeployedFingerprint identifies the chart and settings of the last
	// successful deploy ("" when unknown).
	DeployedFingerprint string
	Status              Status
	// Attempts counts the failed deploy attempts at DesiredSHA since it was
	// first seen, last Ready, or the PR was reopened: the retry budget used. Cancelled
	// attempts (a newer SHA, a shutdown, a crash) do not count.
	Attempts      int
	NextAttemptAt time.Time // zero: no retry planned
	LastError     string
	// WaitingFor and WaitingSince say what a waiting preview waits for
	// (WaitingForImage) and since when; empty and zero otherwise.
	WaitingFor   string
	WaitingSince time.Time
	CommentID    int64 // 0: unknown
	CommentHash  string
	// SHAFirstSeenAt is when DesiredSHA was first observed: deploy latency
	// is ReadyAt - SHAFirstSeenAt.
	SHAFirstSeenAt  time.Time
	DeployStartedAt time.Time
	ReadyAt         time.Time
	// ClosedAt is when the PR was confirmed closed (MarkDeleting); zero
	// while it is open.
	ClosedAt  time.Time
	CreatedAt time.Time
	// UpdatedAt is set by the store on every write: with Status it is the
	// record's version.
	UpdatedAt time.Time
}

// Key returns the preview's key.
func (p Preview) Key() Key { return Key{Repo: p.Repo, Number: p.Number} }

// Attempt is one deploy attempt.
type Attempt struct {
	SHA        string
	Attempt    int // 1, 2, ... per (PR, SHA); never reused
	StartedAt  time.Time
	FinishedAt time.Time // zero while in flight
	Outcome    Outcome   // "" while in flight
	Error      string
}

// Namespace is a namespace previewd owns, as the cluster reports it.
type Namespace struct {
	Name string
	// Repo is the exact "owner/name" from the namespace's annotation.
	Repo string
	// Number is the pull request number (0 if unreadable).
	Number int
	// Terminating: deletion has started (deletionTimestamp is set).
	Terminating bool
	Created     time.Time
}

// Release is the state of a preview's Helm release (its newest revision).
type Release struct {
	// Exists is false when the namespace holds no revision of the release.
	Exists    bool
	Name      string
	Namespace string
	// Status is Helm's: deployed, failed, pending-install, pending-upgrade,
	// pending-rollback, uninstalling, uninstalled, superseded, unknown.
	Status   string
	Revision int
	// Updated is when the revision was last deployed (for uninstalling:
	// when deletion started). For a pending revision: since when it is.
	Updated     time.Time
	Description string
	// SHA is the image tag the revision deployed (values image.tag).
	SHA string
	// Values are the user-supplied values of the revision (not merged
	// with the chart's defaults). Read back from storage, numbers are
	// float64 (JSON).
	Values       map[string]any `json:"-"`
	ChartName    string
	ChartVersion string
}

// Locked reports a release that an operation left pending-* or
// uninstalling: Helm refuses to install or upgrade it.
func (r Release) Locked() bool {
	return r.Exists && (strings.HasPrefix(r.Status, "pending-") || r.Status == "uninstalling")
}

// DeployedAt reports a release that is deployed at sha.
func (r Release) DeployedAt(sha string) bool {
	return r.Exists && r.Status == "deployed" && r.SHA == sha
}

// LockedError is ErrLocked with the state of the pending operation.
type LockedError struct {
	Status string
	Since  time.Time
	Err    error
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("release %s since %s: %v", e.Status, e.Since.UTC().Format(time.RFC3339), e.Err)
}

// Is makes errors.Is(err, ErrLocked) true.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// Unwrap returns the adapter's error.
func (e *LockedError) Unwrap() error { return e.Err }

// ClusterObservation is what the cluster holds.
type ClusterObservation struct {
	// Complete is false when the API server could not be read; then the
	// plan changes nothing in the cluster.
	Complete bool
	Err      error
	Owned    map[string]Namespace // by name
	Foreign  map[string]bool      // names that exist but are not previewd's
	Releases map[string]Release   // by namespace
	// Workloads says, by owned namespace, whether the release's workloads
	// are Ready now; nil when they could not be observed (then nothing is
	// concluded from them).
	Workloads map[string]Workloads
}

// Workloads is the readiness of a preview's workloads as last observed.
type Workloads struct {
	Ready bool
	// NotReady names what is not Ready ("deployment app: 0 of 1 ready").
	NotReady string
}
