package github

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	gh "github.com/google/go-github/v66/github"
)

// PR is a pull request as previewd needs it.
type PR struct {
	Number int
	Title  string
	// Branch is the head branch; SHA its commit.
	Branch string
	SHA    string
	// Author is the login of who opened it.
	Author string
	// State is "open" or "closed"; a merged pull request is closed with
	// Merged set.
	State string
	Draft bool
	// Fork: the head branch lives in another repository than the base, so
	// the code is untrusted. A pull request whose fork was deleted is a Fork
	// too.
	Fork bool
	// ForkDeleted: head.repo is null, the fork is gone.
	ForkDeleted bool
	Merged      bool
	Labels      []string
	HTMLURL     string
	// RepoID is the base repository's id: it survives a rename or a transfer.
	RepoID int64
}

// maxPages bounds a listing (10,000 pull requests or comments at 100 a
// page), so that a server that keeps linking a next page cannot loop us.
const maxPages = 100

// ListOpenPRs returns every open pull request of repo ("owner/name"), newest
// first, following every page (100 a page, sorted by creation so that pages
// stay stable). Any failed page fails the whole call: it never returns a
// partial list, and never an empty list on error.
//
// A pull request opened between two pages is listed once; one closed
// between two pages may shift another off a page, so a pull request missing
// from the list must be confirmed closed with GetPR before acting on it.
func (c *Client) ListOpenPRs(ctx context.Context, repo string) ([]PR, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return nil, c.fail(err, "listing open PRs")
	}
	path := fmt.Sprintf("repos/%s/%s/pulls?state=open&sort=created&direction=desc&per_page=100", url.PathEscape(owner), url.PathEscape(name))
	var prs []PR
	seen := map[int]bool{}
	err = c.pages(ctx, path, func() any { return &[]*gh.PullRequest{} }, func(v any) error {
		for _, p := range *v.(*[]*gh.PullRequest) {
			pr, err := toPR(p)
			if err != nil {
				return err
			}
			if !seen[pr.Number] {
				seen[pr.Number] = true
				prs = append(prs, pr)
			}
		}
		return nil
	})
	if err != nil {
		return nil, c.fail(err, "listing open PRs of %s", repo)
	}
	if prs == nil {
		prs = []PR{}
	}
	return prs, nil
}

// GetPR returns one pull request, open or closed. A 404 is an error wrapping
// ErrNotFound: for a pull request that existed it means the repository was
// deleted, transferred or hidden from previewd's credential, which is not
// the same as closed; the caller keeps the preview and reports it.
func (c *Client) GetPR(ctx context.Context, repo string, number int) (PR, error) {
	owner, name, err := splitRepo(repo)
	if err != nil {
		return PR{}, c.fail(err, "getting PR #%d", number)
	}
	if number <= 0 {
		return PR{}, c.fail(fmt.Errorf("PR number must be positive, got %d", number), "getting a PR of %s", repo)
	}
	var p gh.PullRequest
	path := fmt.Sprintf("repos/%s/%s/pulls/%d", url.PathEscape(owner), url.PathEscape(name), number)
	if _, err := c.do(ctx, c.http, http.MethodGet, path, nil, &p, nil); err != nil {
		return PR{}, c.fail(err, "getting PR %s#%d", repo, number)
	}
	pr, err := toPR(&p)
	if err != nil {
		return PR{}, c.fail(err, "getting PR %s#%d", repo, number)
	}
	if pr.Number != number {
		return PR{}, c.fail(fmt.Errorf("GitHub answered with #%d", pr.Number), "getting PR %s#%d", repo, number)
	}
	return pr, nil
}

// pages GETs path and every page its Link header points to, in order.
func (c *Client) pages(ctx context.Context, path string, newPage func() any, each func(any) error) error {
	page := 1
	for n := 0; ; n++ {
		if n == maxPages {
			return fmt.Errorf("more than %d pages", maxPages)
		}
		p := path
		if page > 1 {
			p += "&page=" + strconv.Itoa(page)
		}
		v := newPage()
		resp, err := c.do(ctx, c.http, http.MethodGet, p, nil, v, nil)
		if err != nil {
			if page > 1 {
				return fmt.Errorf("page %d: %w", page, err)
			}
			return err
		}
		if err := each(v); err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		next, err := nextPage(resp.Header.Get("Link"))
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		if next == 0 {
			return nil
		}
		if next <= page {
			return fmt.Errorf("page %d links back to page %d", page, next)
		}
		page = next
	}
}

// nextPage returns the page number of the rel="next" link, 0 when there is
// none.
func nextPage(link string) (int, error) {
	for part := range strings.SplitSeq(link, ",") {
		target, params, ok := strings.Cut(part, ";")
		if !ok || !hasRel(params, "next") {
			continue
		}
		target = strings.Trim(strings.TrimSpace(target), "<>")
		u, err := url.Parse(target)
		if err != nil {
			return 0, fmt.Errorf("parsing the next link %q: %w", target, err)
		}
		n, err := strconv.Atoi(u.Query().Get("page"))
		if err != nil || n < 1 {
			return 0, fmt.Errorf("next link %q has no page number", target)
		}
		return n, nil
	}
	return 0, nil
}

func hasRel(params, rel string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.TrimSpace(k) == "rel" && slices.Contains(strings.Fields(strings.Trim(v, `"`)), rel) {
			return true
		}
	}
	return false
}

// toPR converts GitHub's pull request; an item without a number or a head
// commit is a suspicious read and fails the call.
func toPR(p *gh.PullRequest) (PR, error) {
	if p == nil || p.GetNumber() <= 0 {
		return PR{}, errors.New("GitHub sent a pull request without a number")
	}
	if p.GetHead().GetSHA() == "" {
		return PR{}, fmt.Errorf("GitHub sent PR #%d without a head commit", p.GetNumber())
	}
	if p.GetBase().GetRepo() == nil {
		// Every item embeds base.repo; without it the fork test cannot be
		// made, and guessing "fork" would remove a running preview.
		return PR{}, fmt.Errorf("GitHub sent PR #%d without base.repo", p.GetNumber())
	}
	pr := PR{
		Number:  p.GetNumber(),
		Title:   p.GetTitle(),
		Branch:  p.GetHead().GetRef(),
		SHA:     p.GetHead().GetSHA(),
		Author:  p.GetUser().GetLogin(),
		State:   p.GetState(),
		Draft:   p.GetDraft(),
		Merged:  p.MergedAt != nil || p.GetMerged(),
		HTMLURL: p.GetHTMLURL(),
		RepoID:  p.GetBase().GetRepo().GetID(),
	}
	head, base := p.GetHead().GetRepo(), p.GetBase().GetRepo()
	switch {
	case head == nil:
		pr.ForkDeleted, pr.Fork = true, true
	default:
		pr.Fork = !sameRepo(head, base)
	}
	for _, l := range p.Labels {
		if n := l.GetName(); n != "" {
			pr.Labels = append(pr.Labels, n)
		}
	}
	return pr, nil
}

func sameRepo(a, b *gh.Repository) bool {
	if a.GetID() != 0 && b.GetID() != 0 {
		return a.GetID() == b.GetID()
	}
	return a.GetFullName() != "" && strings.EqualFold(a.GetFullName(), b.GetFullName())
}

func splitRepo(repo string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" || strings.Contains(name, "/") || strings.TrimSpace(repo) != repo {
		return "", "", fmt.Errorf("repository %q is not owner/name", repo)
	}
	return owner, name, nil
}
