package github

import (
	"context"
	"errors"
	"net/http"
	"time"

	gh "github.com/google/go-github/v66/github"
)

// RateLimit reports the primary (core) rate limit of previewd's credential
// from GET /rate_limit, which GitHub does not charge. It is held like any
// other call while a rate limit holds.
func (c *Client) RateLimit(ctx context.Context) (remaining, limit int, reset time.Time, err error) {
	var rl struct {
		Resources gh.RateLimits `json:"resources"`
	}
	// Not worth caching: the answer changes with every charged request.
	hdr := http.Header{"Cache-Control": {"no-store"}}
	if _, err := c.do(ctx, c.http, http.MethodGet, "rate_limit", nil, &rl, hdr); err != nil {
		return 0, 0, time.Time{}, c.fail(err, "getting the rate limit")
	}
	core := rl.Resources.GetCore()
	if core == nil {
		return 0, 0, time.Time{}, c.fail(errors.New("no core rate in the answer"), "getting the rate limit")
	}
	return core.Remaining, core.Limit, core.Reset.Time, nil
}
