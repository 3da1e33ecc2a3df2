package github

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Check is one CI signal on a commit: a check run (by name) or a commit
// status (by context).
type Check struct {
	// Name is the check run's name or the status's context.
	Name string
	// Kind is CheckKindRun or CheckKindStatus.
	Kind string
	// State is CheckQueued, CheckInProgress or CheckPending (not finished),
	// or CheckSuccess or CheckFailure (finished).
	//
	// A completed check run's conclusion success, neutral or skipped is
	// CheckSuccess; failure, cancelled, timed_out, action_required, stale,
	// startup_failure (or any other) is CheckFailure. A check run that is
	// not completed is CheckQueued or CheckInProgress, or CheckPending for
	// the other statuses (waiting, requested, pending). A commit status
	// success is CheckSuccess; failure or error CheckFailure; pending
	// CheckPending.
	State string
	// Detail is the conclusion (or, not finished, the status) of a check
	// run, or the state of a commit status, as GitHub gave it: "timed_out",
	// "error", "waiting", ...
	Detail string
	// URL is the check run's details_url (its page on GitHub when the app
	// gave none) or the status's target_url; "" when there is none.
	URL string
}

// Kinds of Check.
const (
	CheckKindRun    = "check_run"
	CheckKindStatus = "status"
)

// States of Check.
const (
	CheckQueued     = "queued"
	CheckInProgress = "in_progress"
	CheckPending    = "pending"
	CheckSuccess    = "success"
	CheckFailure    = "failure"
)

// Finished reports whether the check has a final State (success or
// failure).
func (c Check) Finished() bool { return c.State == CheckSuccess || c.State == CheckFailure }

// checkRunsPage is one page of GET /commits/{ref}/check-runs; only the
// fields used are decoded.
type checkRunsPage struct {
	TotalCount *int       `json:"total_count"`
	CheckRuns  []checkRun `json:"check_runs"`
}

type checkRun struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Status      string     `json:"status"`
	Conclusion  *string    `json:"conclusion"`
	DetailsURL  *string    `json:"details_url"`
	HTMLURL     *string    `json:"html_url"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
}

// combinedStatusPage is one page of GET /commits/{ref}/status.
type combinedStatusPage struct {
	TotalCount *int           `json:"total_count"`
	Statuses   []commitStatus `json:"statuses"`
}

type commitStatus struct {
	ID        int64      `json:"id"`
	State     string     `json:"state"`
	Context   string     `json:"context"`
	TargetURL *string    `json:"target_url"`
	UpdatedAt *time.Time `json:"updated_at"`
}

// CommitChecks returns every check run and commit status on the commit sha
// of repo ("owner/name"), sorted by Kind then Name. It reads every page of
// the check runs and of the combined status (whose statuses are already the
// latest of each context), 100 a page, through the conditional-request
// cache: an unchanged answer is a 304 that costs no rate limit. Any failed
// page fails the whole call: it never returns a partial list.
//
// Check runs that share a name (a re-run, or a workflow triggered again on
// the same commit) count once: the newest (highest id) is kept. A check run
// and a status with the same name are two Checks. A commit without any is
// an empty list; an unknown repository or commit is ErrNotFound.
func (c *Client) CommitChecks(ctx context.Context, repo, sha string) ([]Check, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, c.fail(err, "reading the checks of commit %s", sha)
	}
	if err := validSHA(sha); err != nil {
		return nil, c.fail(err, "reading the checks of a commit of %s", repo)
	}
	base := fmt.Sprintf("repos/%s/%s/commits/%s", url.PathEscape(owner), url.PathEscape(name), url.PathEscape(sha))
	runs, err := c.checkRuns(ctx, base+"/check-runs?filter=latest&per_page=100")
	if err != nil {
		return nil, c.fail(err, "listing the check runs of %s@%s", repo, sha)
	}
	statuses, err := c.commitStatuses(ctx, base+"/status?per_page=100")
	if err != nil {
		return nil, c.fail(err, "reading the combined status of %s@%s", repo, sha)
	}
	checks := make([]Check, 0, len(runs)+len(statuses))
	for _, r := range runs {
		checks = append(checks, r.check())
	}
	for _, s := range statuses {
		checks = append(checks, s.check())
	}
	slices.SortFunc(checks, func(a, b Check) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
	return checks, nil
}

// checkRuns lists every page of check runs, the newest run of each name.
func (c *Client) checkRuns(ctx context.Context, path string) ([]checkRun, error) {
	byName := map[string]checkRun{}
	total := -1
	err := c.pages(ctx, path, func() any { return &checkRunsPage{} }, func(v any) error {
		p := v.(*checkRunsPage)
		if err := sameTotal(&total, p.TotalCount, "check runs"); err != nil {
			return err
		}
		for _, r := range p.CheckRuns {
			if r.Name == "" {
				return fmt.Errorf("GitHub sent check run %d without a name", r.ID)
			}
			if old, ok := byName[r.Name]; !ok || newerRun(r, old) {
				byName[r.Name] = r
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	runs := make([]checkRun, 0, len(byName))
	for _, r := range byName {
		runs = append(runs, r)
	}
	return runs, nil
}

// commitStatuses reads every page of the combined status: the latest
// status of each context.
func (c *Client) commitStatuses(ctx context.Context, path string) ([]commitStatus, error) {
	byContext := map[string]commitStatus{}
	total := -1
	err := c.pages(ctx, path, func() any { return &combinedStatusPage{} }, func(v any) error {
		p := v.(*combinedStatusPage)
		if err := sameTotal(&total, p.TotalCount, "statuses"); err != nil {
			return err
		}
		for _, s := range p.Statuses {
			if s.Context == "" {
				return fmt.Errorf("GitHub sent status %d without a context", s.ID)
			}
			if old, ok := byContext[s.Context]; !ok || newerStatus(s, old) {
				byContext[s.Context] = s
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	statuses := make([]commitStatus, 0, len(byContext))
	for _, s := range byContext {
		statuses = append(statuses, s)
	}
	return statuses, nil
}

// sameTotal fails when total_count changed between two pages: something
// was added or removed while listing, so items may have shifted from one
// page to another and been missed. The next call lists again.
func sameTotal(seen *int, got *int, what string) error {
	if got == nil {
		return nil
	}
	if *seen >= 0 && *seen != *got {
		return fmt.Errorf("the %s changed while listing them (total_count %d, then %d)", what, *seen, *got)
	}
	*seen = *got
	return nil
}

// newerRun tells whether a was created after b: check run ids grow, so the
// higher id is the newer run; the start and completion times decide when
// ids are missing or equal.
func newerRun(a, b checkRun) bool {
	if a.ID != b.ID {
		return a.ID > b.ID
	}
	if t := compareTimes(a.StartedAt, b.StartedAt); t != 0 {
		return t > 0
	}
	return compareTimes(a.CompletedAt, b.CompletedAt) > 0
}

func newerStatus(a, b commitStatus) bool {
	if t := compareTimes(a.UpdatedAt, b.UpdatedAt); t != 0 {
		return t > 0
	}
	return a.ID > b.ID
}

// compareTimes orders times, a missing one first.
func compareTimes(a, b *time.Time) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return a.Compare(*b)
}

func (r checkRun) check() Check {
	ch := Check{Name: r.Name, Kind: CheckKindRun, Detail: r.Status, URL: deref(r.DetailsURL)}
	if ch.URL == "" {
		ch.URL = deref(r.HTMLURL)
	}
	switch r.Status {
	case "completed":
		conclusion := deref(r.Conclusion)
		ch.Detail = conclusion
		switch conclusion {
		case "success", "neutral", "skipped":
			ch.State = CheckSuccess
		case "":
			// GitHub sets the conclusion with the completion; without one
			// the run is not known to be finished.
			ch.State, ch.Detail = CheckPending, r.Status
		default:
			// failure, cancelled, timed_out, action_required, stale,
			// startup_failure, and whatever GitHub adds: not a success.
			ch.State = CheckFailure
		}
	case "queued":
		ch.State = CheckQueued
	case "in_progress":
		ch.State = CheckInProgress
	default:
		// waiting, requested, pending (GitHub Actions), or unknown.
		ch.State = CheckPending
	}
	return ch
}

func (s commitStatus) check() Check {
	ch := Check{Name: s.Context, Kind: CheckKindStatus, Detail: s.State, URL: deref(s.TargetURL)}
	switch s.State {
	case "success":
		ch.State = CheckSuccess
	case "pending":
		ch.State = CheckPending
	default:
		// failure, error, and whatever GitHub adds: not a success.
		ch.State = CheckFailure
	}
	return ch
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// validSHA accepts a commit SHA: 4 to 64 hexadecimal digits (SHA-1 or
// SHA-256, possibly abbreviated). A branch name would be resolved by GitHub
// to whatever it points to now, which is not what was asked.
func validSHA(sha string) error {
	if sha == "" {
		return errors.New("commit SHA is empty")
	}
	if len(sha) < 4 || len(sha) > 64 || strings.Trim(sha, "0123456789abcdefABCDEF") != "" {
		return fmt.Errorf("%q is not a commit SHA (4 to 64 hexadecimal digits)", sha)
	}
	return nil
}
