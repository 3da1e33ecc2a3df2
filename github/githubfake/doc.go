// Package githubfake is an in-process fake of the parts of the GitHub REST API
// that previewd uses. Tests, the demo (cmd/github-fake) and benchmarks use it
// instead of api.github.com.
//
// It behaves as GitHub documents it, down to the details that decide how a
// polling client must be built:
//
//   - Authentication: "Authorization: token X" or "Bearer X". Tokens are
//     registered with AddToken/AddTokenAs, or minted by the GitHub App flow
//     (POST /app/installations/{id}/access_tokens with an RS256 JWT). Unknown
//     tokens get 401 {"message":"Bad credentials"}.
//   - Primary rate limit: one bucket per personal token and one per App
//     installation (all tokens of an installation share it, as on GitHub),
//     5,000 requests per hour unless configured. Every authenticated response
//     carries X-RateLimit-Limit/-Remaining/-Used/-Reset/-Resource. An empty
//     bucket answers 403 with X-RateLimit-Remaining: 0, which go-github turns
//     into *github.RateLimitError. GET /rate_limit is never charged.
//   - Conditional requests: every 200 GET carries a strong ETag computed over
//     the body and the Authorization header (another token gets another ETag),
//     Last-Modified, "Cache-Control: private, max-age=60, s-maxage=60" and
//     "Vary: Accept, Authorization, Cookie, X-GitHub-OTP". A matching
//     If-None-Match (or, without it, an If-Modified-Since not older than the
//     resource) answers 304 with no body and is not charged.
//   - Pagination: per_page (default 30, max 100) and page, with a Link header
//     carrying rel="prev", "next", "last" and "first" as absolute
//     /repositories/{id}/... URLs, like GitHub's. Those URLs are served too.
//   - Pull requests embed the full base repository; every push to a
//     repository moves its pushed_at, so the ETag of every pulls page changes.
//     head.repo is null when the fork was deleted; merged_at tells merged from
//     closed. Timestamps that must change on a change (pushed_at, updated_at,
//     Last-Modified) move forward by at least one second each time, so two
//     changes in the same second still change what a client sees.
//   - CI signals of a commit: GET .../commits/{ref}/check-runs lists check
//     runs with total_count (per_page default 30); GET .../commits/{ref}/status
//     is the combined status, whose statuses are the latest of each context
//     (per_page default 100) and whose state is failure if any is failure or
//     error, pending if any is pending or there is none, success otherwise.
//     Both paginate with Link headers, and their ETags change only when the
//     commit's checks or statuses do (SetCheckRun, AddCheckRun,
//     RemoveCheckRuns, SetStatus or a posted status): the combined status
//     embeds the short repository, not pushed_at. Every check run is its own
//     check suite, so a re-run (AddCheckRun) is listed next to the older run
//     of that name, as GitHub lists runs of one name from several suites even
//     with filter=latest.
//
// # Routes
//
// The API routes are listed as Route* constants; counters and faults name
// routes by these templates. With Options.GHEPrefix they live under /api/v3/
// as on GitHub Enterprise Server. Repositories must exist (AddRepo, OpenPR or a
// seed create them); requests for others answer 404.
//
// # Control
//
// Tests drive the fake with Go methods (OpenPR, Push, SetLabels, MergePR, ...)
// and read what it saw (Comments, Statuses, Deployments, Counters, Requests,
// RateLimit). The same operations are served as JSON under /_fake/ for the demo
// binary and scripts; see ControlEndpoints.
//
// # Faults
//
// A Fault changes how the server answers the requests it matches, by route
// template and optionally repository:
//
//	f.FailNext(githubfake.RouteListPulls, 2, http.StatusTooManyRequests, 30*time.Second)
//	f.AddFault(githubfake.Fault{Route: "*", Status: 502, Times: 1})
//	f.AddFault(githubfake.Fault{Route: githubfake.RouteGetPull, Hang: true, Times: 1})
//	f.SetLatency(50 * time.Millisecond)
//
// Faults are checked in the order they were added; the first one that matches
// and has uses left answers the request and uses one up (Times 0 means
// unlimited, until RemoveFault or ClearFaults). A fault acts before
// authentication, like an outage in front of GitHub, and is never charged to
// the primary rate limit:
//
//   - Status 429, or 403, answers GitHub's secondary rate limit error
//     (documentation_url ending in "secondary-rate-limits") with Retry-After in
//     whole seconds when RetryAfter > 0. go-github v66 returns a 403 as
//     *github.AbuseRateLimitError and a 429 as a plain *github.ErrorResponse.
//   - Any other Status (500, 502, 503, 404, ...) answers that status with a
//     JSON message.
//   - Delay waits before answering (or before serving normally when Status is
//     0); SetLatency adds a delay to every API request.
//   - Hang never answers: the request blocks until the client gives up or the
//     server is closed. Drop closes the connection without an answer.
//
// Requests that got no answer (Hang, Drop, client gone during a delay) are
// counted with status 0.
package githubfake
