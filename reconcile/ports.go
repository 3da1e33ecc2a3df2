package reconcile

import (
	"context"
	"errors"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

// PRState is what a GET of one PR says.
type PRState string

// PR states.
const (
	PROpen   PRState = "open"
	PRClosed PRState = "closed"
	PRMerged PRState = "merged"
)

// ErrRepoUnreadable wraps a failure to read one repository that is that
// repository's own (deleted, transferred away, access removed: GitHub
// answered 404 or 403), as opposed to GitHub or previewd failing. The
// repository is reported and its previews are kept; the others converge
// and the cycle counts as successful.
var ErrRepoUnreadable = errors.New("repository unreadable")

// GitHub is what the loop needs from GitHub.
type GitHub interface {
	// ListOpenPRs returns every open PR or an error, never a partial list;
	// an error wraps ErrRepoUnreadable when the repository itself cannot
	// be read.
	ListOpenPRs(ctx context.Context, repo string) ([]PR, error)
	GetPR(ctx context.Context, repo string, number int) (PR, PRState, error)
	// UpsertComment keeps previewd's one comment on a PR. It waits for its
	// turn among comment writes (final states first), then calls render
	// for the comment's known id (0: none) and the body of the latest
	// state, and writes that; written is false when render has nothing to
	// write (ok false) or the write was not made.
	UpsertComment(ctx context.Context, repo string, number int, marker string, final bool,
		render func() (knownID int64, body string, ok bool)) (id int64, written bool, err error)
	// CommitChecks returns every check run and commit status on sha, or
	// an error, never a partial list.
	CommitChecks(ctx context.Context, repo, sha string) ([]Check, error)
}

// Check is one CI signal on a commit: a check run (by name) or a commit
// status (by context).
type Check struct {
	Name string `json:"name"`
	// State is queued, in_progress or pending (not finished), success or
	// failure.
	State string `json:"state"`
}

// Finished reports a check that succeeded or failed.
func (c Check) Finished() bool { return c.State == "success" || c.State == "failure" }

// Cluster is what the loop needs from Kubernetes and Helm.
type Cluster interface {
	// Observe lists previewd's namespaces with their releases, and tells
	// which of the wanted names exist without previewd's ownership labels.
	Observe(ctx context.Context, wanted []string) (model.ClusterObservation, error)
	// EnsureNamespace creates the preview namespace (or confirms it is
	// the PR's) and puts the repository's fence around it.
	EnsureNamespace(ctx context.Context, ns, repo string, number int, fence model.Fence) error
	// SecretsVersion identifies the current version of the named Secrets
	// of a namespace (copy_secrets): it changes when any of them does.
	SecretsVersion(ctx context.Context, namespace string, names []string) (string, error)
	// RenameNamespace moves an owned namespace of PR number from
	// repository from to to (a renamed or transferred repository).
	RenameNamespace(ctx context.Context, ns, from, to string, number int) error
	// Apply loads the chart (fetching it when it is remote) and installs
	// or upgrades the release; it returns a *model.LockedError when a
	// release operation is pending, and an error wrapping
	// model.ErrNotOwned for a namespace that is not the PR's. A chart that
	// cannot be loaded or rendered is an AppFailure.
	Apply(ctx context.Context, ns string, chart model.ChartRef, values map[string]any, timeout time.Duration) error
	// WaitReady waits for the release's workloads; a failure is a
	// *NotReady-style error whose text is shown on the PR.
	WaitReady(ctx context.Context, ns string, timeout time.Duration) error
	Unlock(ctx context.Context, ns string) error
	// Delete uninstalls and deletes an owned namespace and waits until it
	// is gone.
	Delete(ctx context.Context, ns string) error
}

// Store is previewd's memory. Its writes apply reconcile/model's pure
// transitions under a row lock.
type Store interface {
	List(ctx context.Context) ([]model.Preview, error)
	Get(ctx context.Context, key model.Key) (model.Preview, bool, error)
	RecordOpen(ctx context.Context, key model.Key, o model.Open) (model.Preview, error)
	StartAttempt(ctx context.Context, key model.Key, sha string, now time.Time) (int, error)
	FinishAttempt(ctx context.Context, key model.Key, sha string, attempt int, f model.Finish, now time.Time) error
	Block(ctx context.Context, key model.Key, sha, msg string) error
	Hold(ctx context.Context, key model.Key, sha, waitingFor, msg string, final bool, now time.Time) error
	MarkDeleting(ctx context.Context, key model.Key, now time.Time) error
	MarkDeleted(ctx context.Context, key model.Key, now time.Time) error
	SetError(ctx context.Context, key model.Key, msg string) error
	SetComment(ctx context.Context, key model.Key, commentID int64, hash string) error
	Attempts(ctx context.Context, key model.Key) ([]model.Attempt, error)
	// RecordRepoID records GitHub's id of repo on its previews.
	RecordRepoID(ctx context.Context, repo string, id int64) (int64, error)
	// Rename moves a preview to its repository's new name (model.ErrStale
	// when the new name already has a live preview of that PR).
	Rename(ctx context.Context, from model.Key, to string) error
	// Purge removes the records (and attempts) of previews deleted before
	// before.
	Purge(ctx context.Context, before time.Time) (int64, error)
}
