package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	gh "github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/ghlimits"
)

// trimNote ends a body that was trimmed to fit ghlimits.MaxCommentLength.
const trimNote = "\n\n… (trimmed to fit GitHub's comment size limit)\n"

// UpsertComment keeps previewd's one comment on a pull request and returns
// its id. body must contain marker, a hidden HTML comment that identifies
// the comment (e.g. "<!-- previewd:acme/web#12 -->"); a body over
// [ghlimits.MaxCommentLength] characters is trimmed, keeping the marker.
//
// With knownID > 0 that comment is edited. When it is gone (a human deleted
// it) or knownID is 0, the comments of the pull request are listed, every
// page, and the oldest one that contains marker and was written by
// previewd's own login is edited; a human's comment quoting the marker is
// never taken over. Only when there is none is a new comment posted. The
// caller calls it only when the body changed (it keeps a hash), so there is
// no GET to compare first.
func (c *Client) UpsertComment(ctx context.Context, repo string, number int, knownID int64, marker, body string) (int64, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return 0, c.fail(err, "updating the PR comment")
	}
	switch {
	case number <= 0:
		return 0, c.fail(fmt.Errorf("PR number must be positive, got %d", number), "updating the PR comment on %s", repo)
	case strings.TrimSpace(marker) == "":
		return 0, c.fail(errors.New("marker is empty"), "updating the PR comment on %s#%d", repo, number)
	case !strings.Contains(body, marker):
		return 0, c.fail(errors.New("body does not contain the marker"), "updating the PR comment on %s#%d", repo, number)
	}
	body, err = trimComment(body, marker)
	if err != nil {
		return 0, c.fail(err, "updating the PR comment on %s#%d", repo, number)
	}
	log := c.log.With("repo", repo, "pr", number)

	if knownID > 0 {
		err := c.editComment(ctx, owner, name, knownID, body)
		if err == nil {
			log.Debug("updated PR comment", "comment", knownID)
			return knownID, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return 0, c.fail(err, "updating comment %d on %s#%d", knownID, repo, number)
		}
		log.Info("PR comment is gone; looking for it by marker", "comment", knownID)
	}

	id, err := c.identity(ctx)
	if err != nil {
		return 0, c.fail(err, "finding previewd's comment on %s#%d", repo, number)
	}
	found, err := c.findComment(ctx, owner, name, number, marker, id)
	if err != nil {
		return 0, c.fail(err, "finding previewd's comment on %s#%d", repo, number)
	}
	if found > 0 {
		err := c.editComment(ctx, owner, name, found, body)
		if err == nil {
			log.Info("updated PR comment found by marker", "comment", found)
			return found, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return 0, c.fail(err, "updating comment %d on %s#%d", found, repo, number)
		}
		// Deleted between the listing and the edit: post a new one.
	}

	var cm gh.IssueComment
	path := fmt.Sprintf("repos/%s/%s/issues/%d/comments", url.PathEscape(owner), url.PathEscape(name), number)
	if _, err := c.mutate(ctx, http.MethodPost, path, &gh.IssueComment{Body: &body}, &cm); err != nil {
		return 0, c.fail(err, "posting the PR comment on %s#%d", repo, number)
	}
	if cm.GetID() <= 0 {
		return 0, c.fail(errors.New("GitHub answered without a comment id"), "posting the PR comment on %s#%d", repo, number)
	}
	log.Info("posted PR comment", "comment", cm.GetID())
	return cm.GetID(), nil
}

func (c *Client) editComment(ctx context.Context, owner, name string, id int64, body string) error {
	path := fmt.Sprintf("repos/%s/%s/issues/comments/%d", url.PathEscape(owner), url.PathEscape(name), id)
	_, err := c.mutate(ctx, http.MethodPatch, path, &gh.IssueComment{Body: &body}, nil)
	return err
}

// findComment returns the id of the oldest comment of the pull request that
// contains marker and is previewd's, 0 when there is none.
func (c *Client) findComment(ctx context.Context, owner, name string, number int, marker string, id identity) (int64, error) {
	path := fmt.Sprintf("repos/%s/%s/issues/%d/comments?per_page=100", url.PathEscape(owner), url.PathEscape(name), number)
	var best int64
	matches := 0
	err := c.pages(ctx, path, func() any { return &[]issueComment{} }, func(v any) error {
		for _, cm := range *v.(*[]issueComment) {
			if !containsFold(cm.Body, marker) || !id.owns(cm) {
				continue
			}
			matches++
			if best == 0 || cm.ID < best {
				best = cm.ID
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if matches > 1 {
		c.log.Info("several previewd comments carry the marker; keeping the oldest", "owner", owner, "repo", name, "pr", number, "comment", best, "count", matches)
	}
	return best, nil
}

// issueComment is the part of an issue comment findComment reads
// (go-github v66 lacks performed_via_github_app).
type issueComment struct {
	ID   int64  `json:"id"`
	Body string `json:"body"`
	User struct {
		Login string `json:"login"`
	} `json:"user"`
	App *struct {
		ID int64 `json:"id"`
	} `json:"performed_via_github_app"`
}

// identity is who previewd's comments are by.
type identity struct {
	login string // "" when it could not be determined
	appID int64  // the App, for tokens of an installation
}

// owns tells whether previewd wrote cm: by login; without a login, by the
// App that posted it; without either, any author (marker only).
func (id identity) owns(cm issueComment) bool {
	switch {
	case id.login != "":
		return strings.EqualFold(cm.User.Login, id.login)
	case id.appID != 0:
		return cm.App != nil && cm.App.ID == id.appID
	}
	return true
}

// identity determines previewd's login once: Options.BotLogin, GET /user for
// a token, "<slug>[bot]" from GET /app (with the App's JWT) for an App. When
// GitHub refuses to say, it falls back (with a warning) to the App id or the
// marker alone; when GitHub cannot be asked right now, it returns the error
// and asks again next time.
func (c *Client) identity(ctx context.Context) (identity, error) {
	c.identMu.Lock()
	defer c.identMu.Unlock()
	if c.ident != nil {
		return *c.ident, nil
	}
	id := identity{appID: c.appID}
	login, err := c.fetchLogin(ctx)
	switch {
	case err == nil:
		id.login = login
	case ctx.Err() != nil, errors.Is(err, ErrUnavailable), errors.Is(err, ErrRateLimited):
		return identity{}, err
	case c.appID != 0:
		c.log.Warn("cannot determine the GitHub App's bot login (set Options.BotLogin); matching comments by marker and App id", "err", c.redact(err.Error()))
	default:
		c.log.Warn("cannot determine previewd's GitHub login (set Options.BotLogin); matching comments by marker only", "err", c.redact(err.Error()))
	}
	c.ident = &id
	return id, nil
}

func (c *Client) fetchLogin(ctx context.Context) (string, error) {
	if c.botLogin != "" {
		return c.botLogin, nil
	}
	if c.appHTTP == nil {
		var u gh.User
		if _, err := c.do(ctx, c.http, http.MethodGet, "user", nil, &u, nil); err != nil {
			return "", fmt.Errorf("getting the authenticated user: %w", err)
		}
		if u.GetLogin() == "" {
			return "", errors.New("getting the authenticated user: no login in the answer")
		}
		return u.GetLogin(), nil
	}
	var app gh.App
	if _, err := c.do(ctx, c.appHTTP, http.MethodGet, "app", nil, &app, nil); err != nil {
		return "", fmt.Errorf("getting the App: %w", err)
	}
	if app.GetSlug() == "" {
		return "", errors.New("getting the App: no slug in the answer")
	}
	return app.GetSlug() + "[bot]", nil
}

// trimComment cuts a body over ghlimits.MaxCommentLength characters, ends
// it with a note and keeps the marker. It is previewd's one comment
// trimmer: callers may pass bodies of any length.
func trimComment(body, marker string) (string, error) {
	if utf8.RuneCountInString(body) <= ghlimits.MaxCommentLength {
		return body, nil
	}
	budget := ghlimits.MaxCommentLength - utf8.RuneCountInString(trimNote) - utf8.RuneCountInString(marker) - 1
	if budget <= 0 {
		return "", fmt.Errorf("marker is too long (%d characters)", utf8.RuneCountInString(marker))
	}
	head := firstRunes(body, budget)
	// Do not leave an HTML comment open: it would hide the rest.
	if open := strings.LastIndex(head, "<!--"); open >= 0 && !strings.Contains(head[open:], "-->") {
		head = head[:open]
	}
	if strings.Contains(head, marker) {
		return head + trimNote, nil
	}
	return head + trimNote + marker + "\n", nil
}

func firstRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// containsFold reports whether s contains substr, ignoring letter case:
// a marker names the repository, whose name GitHub treats case-insensitively.
func containsFold(s, substr string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(substr))
}
