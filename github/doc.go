// Package github is previewd's view of GitHub: the open pull requests of a
// repository, one pull request, the CI checks of a commit (CommitChecks: its
// check runs by name and commit statuses by context, for wait_for_checks),
// and the one status comment previewd keeps on each pull request. It reads by
// polling, so it is built to make polling cheap and safe:
//
//   - Conditional requests. Every GET goes through an HTTP cache
//     (httpcache) that revalidates on every call: GitHub's
//     "Cache-Control: private, max-age=60" is rewritten to "no-cache" below
//     the cache, so an unchanged list costs a 304, which GitHub does not
//     charge, and a change is seen on the very next poll.
//   - One cache per credential. Cache keys carry a hash of the credential
//     (and API URL), so a shared backing store never serves one token's or
//     installation's data to another.
//   - Never a partial answer. ListOpenPRs returns every open pull request or
//     an error; a failed page fails the whole list. A 404 is ErrNotFound,
//     never "closed".
//   - CommitChecks reads every page of a commit's check runs and of its
//     combined status the same way: an unchanged commit costs only 304s,
//     a failed page (or a list that changed between pages) fails the call.
//     Each Check's State is queued, in_progress or pending (not finished),
//     or success or failure; re-runs of a check run count once, the newest.
//     Call it only for commits that are waiting for checks.
//   - No request storms. A primary rate limit (403 with
//     X-RateLimit-Remaining: 0) holds every call until X-RateLimit-Reset; a
//     secondary limit (403 secondary, or 429) until Retry-After (60 s when
//     absent). While held, calls fail at once with ErrRateLimited without
//     sending anything. 5xx answers and network errors are retried twice
//     (GETs only) with a short exponential backoff, then ErrUnavailable.
//     Mutations run one at a time, spaced by Options.MutationSpacing.
//   - Secrets stay secret. Tokens, JWTs and keys are added below the cache
//     and never reach logs, errors or cache entries.
//
// The transport stack, bottom to top:
//
//	http.Transport → auth (PAT, or GitHub App installation token)
//	  → observe (metrics, rewrite Cache-Control) → httpcache → Client
//
// Metrics (when Options.Registerer is set):
//
//	previewd_github_requests_total{outcome="ok|not_modified|client_error|rate_limited|server_error|network_error"}
//	previewd_github_rate_limit_remaining
//
// requests_total counts what GitHub answered (below the cache), so a 304 is
// not_modified even though the caller receives the cached 200.
package github
