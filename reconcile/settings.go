package reconcile

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/reconcile/render"
)

// Repo is one repository's validated settings.
type Repo struct {
	Name string
	// Chart is where the chart comes from.
	Chart model.ChartSource
	Image string
	// Host is the preview's host template; nil when the repository sets
	// none (the comment then shows no URL).
	Host *render.Template
	// Values are the repository's extra Helm values, compiled.
	Values *render.Values
	Policy RepoPolicy
	// Fence is what surrounds each preview namespace.
	Fence model.Fence
	// Digest identifies the settings that produce the preview's Helm
	// values (image, host, values); with the chart's digest it makes the
	// fingerprint of a deploy, so that a change plans an upgrade.
	Digest string
}

// RepoPolicy holds the per-repository filters.
type RepoPolicy struct {
	AllowForks    bool
	SkipDrafts    bool
	RequireLabels []string
	IgnoreLabels  []string
	// ImageWait is how long a missing image of the preview's own at the
	// head SHA is waited for (CI still pushing it); 0: not at all.
	ImageWait time.Duration
	// WaitForChecks names the checks (check runs by name, commit statuses
	// by context) that must succeed on the head SHA before anything is
	// deployed; "*" is every check reported on it. Empty: none.
	WaitForChecks []string
	// ChecksTimeout is how long after the head SHA was first seen the
	// checks may take; then the SHA is not deployed.
	ChecksTimeout time.Duration
}

// Settings are everything the loop, the planner and the executor are
// configured with: one validated value, built by the wiring from the
// configuration file (which owns every default).
type Settings struct {
	Repos         []Repo
	Interval      time.Duration // poll period
	Resync        time.Duration // full resync period; 0: none
	DeployTimeout time.Duration // readiness wait of one attempt
	HelmTimeout   time.Duration // one Helm install/upgrade/uninstall
	MaxParallel   int           // deploys at once
	MaxAttempts   int           // failed attempts per SHA before previewd waits for a new SHA
	// Backoff is the wait after failed attempt n (1-based) before the
	// next one.
	Backoff func(n int) time.Duration
	// ImageRecheck is when previewd looks again for a missing image it
	// has waited for since waited ago.
	ImageRecheck func(waited time.Duration) time.Duration
	// OrphanGrace is how long previews of a repository that is no longer
	// configured are kept after previewd first noticed it; 0: removed at
	// once.
	OrphanGrace time.Duration
	// Retention is how long the records of deleted previews are kept;
	// 0: for ever.
	Retention time.Duration
}

// Validate says what is wrong with s, naming the field.
func (s Settings) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if s.Interval <= 0 {
		bad("settings: Interval must be positive, got %s", s.Interval)
	}
	if s.Resync < 0 {
		bad("settings: Resync must not be negative, got %s", s.Resync)
	}
	if s.DeployTimeout <= 0 {
		bad("settings: DeployTimeout must be positive, got %s", s.DeployTimeout)
	}
	if s.HelmTimeout <= 0 {
		bad("settings: HelmTimeout must be positive, got %s", s.HelmTimeout)
	}
	if s.MaxParallel < 1 {
		bad("settings: MaxParallel must be at least 1, got %d", s.MaxParallel)
	}
	if s.MaxAttempts < 1 {
		bad("settings: MaxAttempts must be at least 1, got %d", s.MaxAttempts)
	}
	if s.Backoff == nil {
		bad("settings: Backoff is nil")
	}
	if s.ImageRecheck == nil {
		bad("settings: ImageRecheck is nil")
	}
	if s.OrphanGrace < 0 {
		bad("settings: OrphanGrace must not be negative, got %s", s.OrphanGrace)
	}
	seen := map[string]bool{}
	for i, r := range s.Repos {
		switch {
		case r.Name == "":
			bad("settings: Repos[%d].Name is empty", i)
		case r.Name != strings.ToLower(r.Name):
			// Records, namespaces and orphan detection key on the
			// lower-case name (the configuration folds it).
			bad("settings: Repos[%d].Name %q must be lower case", i, r.Name)
		case seen[strings.ToLower(r.Name)]:
			bad("settings: Repos[%d].Name %q is listed twice", i, r.Name)
		}
		seen[strings.ToLower(r.Name)] = true
	}
	return errors.Join(errs...)
}

// lockMargin is how much longer than a Helm operation may last a release
// stays locked before it counts as interrupted: the operation's own
// clean-up after its timeout (marking the revision failed) and clock skew
// between processes.
const lockMargin = 15 * time.Second

// LockStaleAfter is the age after which a release left pending-* (or
// uninstalling) was interrupted (a process died mid-operation) and may be
// taken over: never before a Helm operation that may still be running
// (HelmTimeout) could have ended, whatever deploy_timeout says.
func (s Settings) LockStaleAfter() time.Duration {
	return max(s.DeployTimeout, s.HelmTimeout+lockMargin)
}

// policies are the repositories' policies, by name: also the set of
// configured repositories.
func (s Settings) policies() map[string]RepoPolicy {
	out := make(map[string]RepoPolicy, len(s.Repos))
	for _, r := range s.Repos {
		out[r.Name] = r.Policy
	}
	return out
}

// PlanOptions are the planner's parameters at now.
func (s Settings) PlanOptions(now time.Time, namespaceFor func(string, int) string, commentHash func(model.Preview) string) Options {
	digests := make(map[string]string, len(s.Repos))
	for _, r := range s.Repos {
		digests[r.Name] = r.Digest
	}
	policies := s.policies()
	return Options{Now: now, MaxAttempts: s.MaxAttempts, LockStaleAfter: s.LockStaleAfter(), Backoff: s.Backoff,
		ImageRecheck: s.ImageRecheck, MaxParallel: s.MaxParallel, OrphanGrace: s.OrphanGrace, Policies: policies, Digests: digests, NamespaceFor: namespaceFor, CommentHash: commentHash}
}
