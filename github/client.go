package github

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bradleyfalzon/ghinstallation/v2"
	gh "github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/internal/redact"
)

// Errors of the Client; test them with errors.Is.
var (
	// ErrNotFound: GitHub answered 404. For a pull request that existed it
	// means the repository was deleted, renamed away or made inaccessible to
	// previewd's credential, not that the pull request was closed: the caller
	// keeps the preview and reports the error.
	ErrNotFound = errors.New("not found on GitHub")
	// ErrForbidden: GitHub refused the request for this token, not
	// because of a rate limit (403 or 451).
	ErrForbidden = errors.New("forbidden by GitHub")
	// ErrRateLimited: GitHub's primary or secondary rate limit was hit, now or
	// by an earlier call; the error is a *RateLimitedError that says until
	// when calls are held.
	ErrRateLimited = errors.New("GitHub rate limit")
	// ErrUnavailable: GitHub answered 5xx or could not be reached, also after
	// the retries. Nothing can be concluded from the call.
	ErrUnavailable = errors.New("GitHub unavailable")
)

// RateLimitedError reports a rate limit. errors.Is(err, ErrRateLimited) is
// true for it.
type RateLimitedError struct {
	// Until is when calls are allowed again.
	Until time.Time
	// Secondary tells a secondary limit (403 secondary, 429) from the
	// primary (hourly) one.
	Secondary bool
	// sent is true when GitHub answered this call; false when the call was
	// held without sending.
	sent bool
	err  error
}

func (e *RateLimitedError) Error() string {
	kind := "primary"
	if e.Secondary {
		kind = "secondary"
	}
	msg := fmt.Sprintf("%v (%s limit): holding requests until %s", ErrRateLimited, kind, e.Until.UTC().Format(time.RFC3339))
	if !e.sent {
		msg += ", not sent"
	}
	if e.err != nil {
		msg += ": " + e.err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrRateLimited) true.
func (e *RateLimitedError) Is(target error) bool { return target == ErrRateLimited }

// Unwrap returns GitHub's answer (a *github.RateLimitError,
// *github.AbuseRateLimitError or *github.ErrorResponse), nil when not sent.
func (e *RateLimitedError) Unwrap() error { return e.err }

// Client talks to GitHub. It is safe for concurrent use.
type Client struct {
	gh      *gh.Client   // builds requests (base URL, headers); never sends
	http    *http.Client // cache → observe → auth → base
	appHTTP *http.Client // App JWT requests (GET /app); nil for tokens
	archive *http.Client // repository archives: observe → auth → base, no cache
	base    *http.Transport
	log     *slog.Logger

	appID    int64
	botLogin string              // Options.BotLogin
	redactor func(string) string // redact.New with the token

	spacing time.Duration
	backoff time.Duration
	retries int

	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error

	mu           sync.Mutex
	blockedUntil time.Time
	blockedSec   bool
	// writesBlockedUntil holds writes only: a secondary limit met by a
	// write (content creation) does not stop reads.
	writesBlockedUntil time.Time

	budget writeBudget
	turns  turns

	identMu sync.Mutex
	ident   *identity // nil until known; guarded by identMu

	mutations    chan struct{} // one mutation at a time
	lastMutation time.Time     // guarded by mutations
}

// Close releases idle connections.
func (c *Client) Close() {
	c.base.CloseIdleConnections()
}

const maxBody = 64 << 20

// transportError is a request that got no answer from GitHub.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// send does one request: it fails at once while a rate limit holds, reads
// the whole body (httpcache stores a response only when its body reaches
// EOF) and decodes it into out.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path string, in, out any, hdr http.Header) (*http.Response, error) {
	if err := c.held(); err != nil {
		return nil, err
	}
	req, err := c.gh.NewRequest(method, path, in)
	if err != nil {
		return nil, fmt.Errorf("building request %s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if ctx.Value(unconditionalKey{}) != nil && method == http.MethodGet {
		// httpcache then sends no validator: a full, charged answer that
		// replaces whatever the cache held.
		req.Header.Set("Cache-Control", "no-cache")
	}
	resp, err := hc.Do(req.WithContext(ctx))
	if err != nil {
		return nil, &transportError{err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, &transportError{fmt.Errorf("reading the answer to %s %s: %w", method, req.URL.Path, err)}
	}
	if len(data) > maxBody {
		return nil, fmt.Errorf("answer to %s %s is larger than %d bytes", method, req.URL.Path, maxBody)
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if err := gh.CheckResponse(resp); err != nil {
		return resp, err
	}
	if out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp, fmt.Errorf("decoding the answer to %s %s: %w", method, req.URL.Path, err)
		}
	}
	return resp, nil
}

// do sends a request and handles what went wrong: a rate limit holds every
// call, a GET that met a 5xx or a network error is retried, a 404 becomes
// ErrNotFound.
func (c *Client) do(ctx context.Context, hc *http.Client, method, path string, in, out any, hdr http.Header) (*http.Response, error) {
	attempts := 1
	if method == http.MethodGet {
		attempts += c.retries
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.send(ctx, hc, method, path, in, out, hdr)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		if _, ok := errors.AsType[*RateLimitedError](err); ok {
			return nil, err
		}
		f := c.classify(err)
		switch f.kind {
		case failRateLimited:
			return nil, c.hold(f, err, method, path)
		case failUnavailable:
			if attempt < attempts {
				wait := c.backoff << (attempt - 1)
				c.log.Debug("retrying GitHub request", "method", method, "path", path, "attempt", attempt+1, "wait", wait, "err", c.redact(err.Error()))
				if err := c.sleep(ctx, wait); err != nil {
					return nil, err
				}
				continue
			}
			if attempts > 1 {
				return nil, fmt.Errorf("%w (%d attempts): %w", ErrUnavailable, attempt, err)
			}
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		case failNotFound:
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		case failForbidden:
			return nil, fmt.Errorf("%w: %w", ErrForbidden, err)
		}
		return nil, err
	}
}

type failKind int

const (
	failOther failKind = iota
	failRateLimited
	failUnavailable
	failNotFound
	failForbidden
)

type failure struct {
	kind      failKind
	until     time.Time
	secondary bool
}

// DefaultRetryAfter is how long a secondary rate limit holds calls when
// GitHub sends no Retry-After.
const DefaultRetryAfter = 60 * time.Second

func (c *Client) classify(err error) failure {
	now := c.now()
	if rle, ok := errors.AsType[*gh.RateLimitError](err); ok {
		return failure{kind: failRateLimited, until: resetOr(rle.Rate.Reset.Time, now)}
	}
	if are, ok := errors.AsType[*gh.AbuseRateLimitError](err); ok {
		d := DefaultRetryAfter
		if are.RetryAfter != nil {
			d = max(*are.RetryAfter, time.Second)
		}
		return failure{kind: failRateLimited, until: now.Add(d), secondary: true}
	}
	if er, ok := errors.AsType[*gh.ErrorResponse](err); ok && er.Response != nil {
		h := er.Response.Header
		switch code := er.Response.StatusCode; {
		case code == http.StatusTooManyRequests:
			// go-github returns a 429 as a plain ErrorResponse.
			if h.Get("X-RateLimit-Remaining") == "0" && h.Get("Retry-After") == "" {
				if s, err := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64); err == nil {
					return failure{kind: failRateLimited, until: resetOr(time.Unix(s, 0), now)}
				}
			}
			return failure{kind: failRateLimited, until: now.Add(retryAfter(h.Get("Retry-After"), now)), secondary: true}
		case code >= 500:
			return failure{kind: failUnavailable}
		case code == http.StatusNotFound:
			return failure{kind: failNotFound}
		case code == http.StatusForbidden || code == http.StatusUnavailableForLegalReasons:
			// Not a rate limit (go-github makes those typed errors):
			// this token may not read it (App access removed, a
			// repository blocked or its access restricted).
			return failure{kind: failForbidden}
		}
		return failure{kind: failOther}
	}
	if he, ok := errors.AsType[*ghinstallation.HTTPError](err); ok && he.Response != nil {
		// The installation token exchange got an answer: only a 5xx is
		// worth retrying; a 401 or 404 needs the operator.
		if he.Response.StatusCode >= 500 {
			return failure{kind: failUnavailable}
		}
		return failure{kind: failOther}
	}
	if _, ok := errors.AsType[*transportError](err); ok {
		return failure{kind: failUnavailable}
	}
	return failure{kind: failOther}
}

// resetOr returns the X-RateLimit-Reset time, or a minute from now when it
// is missing or already past (clock skew).
func resetOr(reset, now time.Time) time.Time {
	if reset.After(now) {
		return reset
	}
	return now.Add(DefaultRetryAfter)
}

// retryAfter parses Retry-After (seconds or an HTTP date).
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return DefaultRetryAfter
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		return max(time.Duration(s)*time.Second, time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), time.Second)
	}
	return DefaultRetryAfter
}

// hold records a rate limit: every call fails at once until f.until; a
// secondary limit met by a write holds writes only (GitHub's content
// creation limits), so that listing, and with it deletions, go on.
func (c *Client) hold(f failure, err error, method, path string) error {
	writesOnly := f.secondary && method != http.MethodGet
	c.mu.Lock()
	switch {
	case writesOnly && f.until.After(c.writesBlockedUntil):
		c.writesBlockedUntil = f.until
	case !writesOnly && f.until.After(c.blockedUntil):
		c.blockedUntil, c.blockedSec = f.until, f.secondary
	}
	c.mu.Unlock()
	what := "all requests"
	if writesOnly {
		what = "writes (reads go on)"
	}
	c.log.Warn("GitHub rate limit hit: holding "+what, "until", f.until.UTC().Format(time.RFC3339),
		"secondary", f.secondary, "method", method, "path", path)
	return &RateLimitedError{Until: f.until, Secondary: f.secondary, sent: true, err: err}
}

// heldWrite returns a *RateLimitedError while writes are held (by a limit
// on writes or on every call).
func (c *Client) heldWrite() error {
	if err := c.held(); err != nil {
		return err
	}
	c.mu.Lock()
	until := c.writesBlockedUntil
	c.mu.Unlock()
	if c.now().Before(until) {
		return &RateLimitedError{Until: until, Secondary: true}
	}
	return nil
}

// held returns a *RateLimitedError while a rate limit holds calls.
func (c *Client) held() error {
	c.mu.Lock()
	until, sec := c.blockedUntil, c.blockedSec
	c.mu.Unlock()
	if c.now().Before(until) {
		return &RateLimitedError{Until: until, Secondary: sec}
	}
	return nil
}

// maxMutationRetryAfter is the longest Retry-After a mutation waits for
// before its one retry.
const maxMutationRetryAfter = 10 * time.Second

// mutate sends a mutating request: one at a time, MutationSpacing apart,
// never retried after a 5xx (a POST may have been applied), retried once
// after a secondary rate limit whose Retry-After is short.
func (c *Client) mutate(ctx context.Context, method, path string, in, out any) (*http.Response, error) {
	select {
	case c.mutations <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() {
		c.lastMutation = c.now()
		<-c.mutations
	}()
	if !c.lastMutation.IsZero() {
		if wait := c.lastMutation.Add(c.spacing).Sub(c.now()); wait > 0 {
			if err := c.sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
	}
	if err := c.heldWrite(); err != nil {
		return nil, err
	}
	if ok, next := c.budget.take(c.now()); !ok {
		c.log.Warn("GitHub write budget used up (content creation limits): write not sent",
			"per_minute", c.budget.perMinute, "per_hour", c.budget.perHour, "next", next.UTC().Format(time.RFC3339), "method", method, "path", path)
		return nil, &RateLimitedError{Until: next, Secondary: true}
	}
	resp, err := c.do(ctx, c.http, method, path, in, out, nil)
	rl, ok := errors.AsType[*RateLimitedError](err)
	if !ok || !rl.sent || !rl.Secondary {
		return resp, err
	}
	wait := rl.Until.Sub(c.now())
	if wait > maxMutationRetryAfter {
		return resp, err
	}
	c.log.Info("retrying GitHub mutation after a secondary rate limit", "method", method, "path", path, "wait", wait)
	if err := c.sleep(ctx, wait); err != nil {
		return nil, err
	}
	if ok, next := c.budget.take(c.now()); !ok { // the retry is a write too
		return nil, &RateLimitedError{Until: next, Secondary: true}
	}
	return c.do(ctx, c.http, method, path, in, out, nil)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// redact removes the client's credentials and whatever else looks like
// one (defence in depth: the messages built here carry none).
func (c *Client) redact(s string) string {
	if c.redactor == nil {
		return redact.String(s)
	}
	return c.redactor(s)
}

// redactedError is what the exported methods return: the message is
// scrubbed of credentials, the chain stays for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// fail wraps err with what the call was doing.
func (c *Client) fail(err error, format string, args ...any) error {
	err = fmt.Errorf(format+": %w", append(args, err)...)
	return &redactedError{msg: c.redact(err.Error()), err: err}
}

type unconditionalKey struct{}

// Unconditional marks ctx so that reads bypass the conditional-request
// cache (previewd's periodic full resync): each GET costs one request of
// the rate limit and refreshes the cached entry.
func Unconditional(ctx context.Context) context.Context {
	return context.WithValue(ctx, unconditionalKey{}, true)
}
