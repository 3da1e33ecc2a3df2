package githubfake_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

func TestPaginationAcross250PRs(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 250)
	gh := newClient(t, f, tok, revalidating)
	c := ctx(t)

	var numbers []int
	page, pages := 1, 0
	for page != 0 {
		prs, resp, err := listOpen(c, gh, 100, page)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		link := resp.Header.Get("Link")
		switch page {
		case 1:
			if resp.NextPage != 2 || resp.LastPage != 3 || resp.PrevPage != 0 {
				t.Fatalf("page 1: next %d last %d prev %d", resp.NextPage, resp.LastPage, resp.PrevPage)
			}
			if !strings.Contains(link, `rel="next"`) || !strings.Contains(link, `rel="last"`) || strings.Contains(link, `rel="first"`) {
				t.Fatalf("page 1 Link = %s", link)
			}
		case 2:
			if resp.PrevPage != 1 || resp.NextPage != 3 || resp.FirstPage != 1 || resp.LastPage != 3 {
				t.Fatalf("page 2: %+v", resp)
			}
		case 3:
			if len(prs) != 50 || resp.NextPage != 0 || resp.PrevPage != 2 || resp.FirstPage != 1 {
				t.Fatalf("page 3: %d PRs, next %d prev %d first %d", len(prs), resp.NextPage, resp.PrevPage, resp.FirstPage)
			}
		}
		for _, pr := range prs {
			numbers = append(numbers, pr.GetNumber())
		}
		page = resp.NextPage
	}
	if pages != 3 || len(numbers) != 250 {
		t.Fatalf("%d pages, %d PRs", pages, len(numbers))
	}
	for i, n := range numbers {
		if n != 250-i {
			t.Fatalf("item %d is #%d: want newest first (sort=created, desc)", i, n)
		}
	}
}

func TestLinkHeaderIsAbsoluteAndFollowable(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 5)
	resp, _ := rawGet(t, f.APIURL()+"repos/acme/shop/pulls?per_page=2&state=open&page=2", tok)
	link := resp.Header.Get("Link")
	re := regexp.MustCompile(`<([^>]+)>; rel="(\w+)"`)
	rels := map[string]string{}
	var order []string
	for _, m := range re.FindAllStringSubmatch(link, -1) {
		rels[m[2]] = m[1]
		order = append(order, m[2])
	}
	if strings.Join(order, ",") != "prev,next,last,first" {
		t.Fatalf("rel order = %v (Link %s)", order, link)
	}
	next := rels["next"]
	if !strings.HasPrefix(next, f.APIURL()+"repositories/") || !strings.Contains(next, "per_page=2") ||
		!strings.Contains(next, "state=open") || !strings.HasSuffix(next, "page=3") {
		t.Fatalf("next = %s", next)
	}
	resp, body := rawGet(t, next, tok)
	var prs []github.PullRequest
	if err := json.Unmarshal(body, &prs); err != nil || resp.StatusCode != 200 {
		t.Fatalf("following next: %d %v", resp.StatusCode, err)
	}
	if len(prs) != 1 || prs[0].GetNumber() != 1 {
		t.Fatalf("page 3 = %d PRs, first #%d", len(prs), prs[0].GetNumber())
	}
	// One page: no Link at all.
	if resp, _ := rawGet(t, f.APIURL()+"repos/acme/shop/pulls", tok); resp.Header.Get("Link") != "" {
		t.Fatalf("single page Link = %q", resp.Header.Get("Link"))
	}
}

func TestForkPullRequests(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.OpenPR(repo, githubfake.PR{Title: "same repo", Branch: "inside"})
	f.OpenPR(repo, githubfake.PR{Title: "fork", Branch: "outside", Author: "alice", FromFork: true})
	f.OpenPR(repo, githubfake.PR{Title: "gone", Branch: "gone", Author: "bob", ForkDeleted: true})
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)

	prs, _, err := listOpen(c, gh, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	byNum := map[int]*github.PullRequest{}
	for _, pr := range prs {
		byNum[pr.GetNumber()] = pr
		if pr.GetBase().GetRepo().GetFullName() != repo {
			t.Fatalf("#%d base.repo = %q", pr.GetNumber(), pr.GetBase().GetRepo().GetFullName())
		}
	}
	if h := byNum[1].GetHead(); h.GetRepo().GetFullName() != repo || h.GetRepo().GetFork() {
		t.Fatalf("#1 head.repo = %+v", h.GetRepo())
	}
	if h := byNum[2].GetHead(); h.GetRepo().GetFullName() != "alice/shop" || !h.GetRepo().GetFork() || h.GetLabel() != "alice:outside" {
		t.Fatalf("#2 head = %s %+v", h.GetLabel(), h.GetRepo())
	}
	if h := byNum[3].GetHead(); h.Repo != nil || h.GetSHA() == "" || h.GetRef() != "gone" {
		t.Fatalf("#3 head.repo = %+v, want nil with ref and sha", h.Repo)
	}

	if err := f.DeleteFork(repo, 2); err != nil {
		t.Fatal(err)
	}
	pr, _, err := gh.PullRequests.Get(c, owner, name, 2)
	if err != nil {
		t.Fatal(err)
	}
	if pr.GetHead().Repo != nil {
		t.Fatal("head.repo not null after the fork was deleted")
	}
	if err := f.DeleteFork(repo, 1); !errors.Is(err, githubfake.ErrConflict) {
		t.Fatalf("DeleteFork of a same-repo PR: %v", err)
	}
}

func TestMergedClosedReopened(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	openPRs(t, f, 3)
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	if err := f.MergePR(repo, 1); err != nil {
		t.Fatal(err)
	}
	if err := f.ClosePR(repo, 2); err != nil {
		t.Fatal(err)
	}

	closed, _, err := gh.PullRequests.List(c, owner, name, &github.PullRequestListOptions{State: "closed"})
	if err != nil {
		t.Fatal(err)
	}
	if len(closed) != 2 {
		t.Fatalf("%d closed PRs", len(closed))
	}
	for _, pr := range closed {
		switch pr.GetNumber() {
		case 1:
			if pr.MergedAt == nil || pr.ClosedAt == nil || pr.GetMergeCommitSHA() == "" {
				t.Fatalf("#1 merged_at %v closed_at %v", pr.MergedAt, pr.ClosedAt)
			}
		case 2:
			if pr.MergedAt != nil || pr.ClosedAt == nil {
				t.Fatalf("#2 merged_at %v closed_at %v", pr.MergedAt, pr.ClosedAt)
			}
		}
		if pr.Merged != nil {
			t.Fatalf("#%d: list items carry no \"merged\" (GitHub sends it only on GET)", pr.GetNumber())
		}
	}
	pr, _, err := gh.PullRequests.Get(c, owner, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !pr.GetMerged() || pr.GetState() != "closed" || pr.GetMergedBy().GetLogin() == "" {
		t.Fatalf("GET #1: merged %v state %s", pr.GetMerged(), pr.GetState())
	}
	open, _, err := listOpen(c, gh, 100, 0)
	if err != nil || len(open) != 1 || open[0].GetNumber() != 3 {
		t.Fatalf("open = %d PRs, %v", len(open), err)
	}
	all, _, err := gh.PullRequests.List(c, owner, name, &github.PullRequestListOptions{State: "all"})
	if err != nil || len(all) != 3 {
		t.Fatalf("all = %d PRs, %v", len(all), err)
	}

	if err := f.ReopenPR(repo, 2); err != nil {
		t.Fatal(err)
	}
	if err := f.ReopenPR(repo, 1); !errors.Is(err, githubfake.ErrConflict) {
		t.Fatalf("reopening a merged PR: %v", err)
	}
	if err := f.Push(repo, 1, "abc"); !errors.Is(err, githubfake.ErrConflict) {
		t.Fatalf("pushing to a merged PR: %v", err)
	}
	if err := f.Push(repo, 99, "abc"); !errors.Is(err, githubfake.ErrNotFound) {
		t.Fatalf("pushing to an unknown PR: %v", err)
	}
	pr, _, err = gh.PullRequests.Get(c, owner, name, 2)
	if err != nil || pr.GetState() != "open" || pr.ClosedAt != nil {
		t.Fatalf("reopened #2: %s closed_at %v %v", pr.GetState(), pr.ClosedAt, err)
	}
}

func TestPullRequestFields(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.OpenPR(repo, githubfake.PR{Title: "Add cart", Branch: "feat/cart", SHA: "0123456789abcdef0123456789abcdef01234567",
		Author: "alice", Labels: []string{"preview", "preview"}, Draft: true})
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	prs, _, err := listOpen(c, gh, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	pr := prs[0]
	if pr.GetTitle() != "Add cart" || !pr.GetDraft() || pr.GetUser().GetLogin() != "alice" || pr.GetState() != "open" ||
		pr.GetHead().GetRef() != "feat/cart" || pr.GetHead().GetSHA() != "0123456789abcdef0123456789abcdef01234567" ||
		pr.GetBase().GetRef() != "main" || pr.GetBase().GetSHA() == "" || pr.CreatedAt == nil || pr.UpdatedAt == nil ||
		!strings.HasSuffix(pr.GetHTMLURL(), "/acme/shop/pull/1") {
		t.Fatalf("PR = %+v", pr)
	}
	if len(pr.Labels) != 1 || pr.Labels[0].GetName() != "preview" {
		t.Fatalf("labels = %v", pr.Labels)
	}

	before := pr.GetUpdatedAt()
	if err := f.SetLabels(repo, 1, "preview", "db"); err != nil {
		t.Fatal(err)
	}
	if err := f.SetDraft(repo, 1, false); err != nil {
		t.Fatal(err)
	}
	pr, _, err = gh.PullRequests.Get(c, owner, name, 1)
	if err != nil {
		t.Fatal(err)
	}
	if pr.GetDraft() || len(pr.Labels) != 2 || !pr.GetUpdatedAt().After(before.Time) {
		t.Fatalf("after SetLabels/SetDraft: draft %v labels %d updated %v (was %v)", pr.GetDraft(), len(pr.Labels), pr.GetUpdatedAt(), before)
	}

	// Filters GitHub supports.
	prs, _, err = gh.PullRequests.List(c, owner, name, &github.PullRequestListOptions{Head: "acme:feat/cart"})
	if err != nil || len(prs) != 1 {
		t.Fatalf("head filter: %d %v", len(prs), err)
	}
	_, _, err = gh.PullRequests.List(c, owner, name, &github.PullRequestListOptions{State: "merged"})
	errorResponse(t, err, http.StatusUnprocessableEntity)
}

func TestUnknownRepositoryAndRoute(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	_, _, err := gh.PullRequests.List(c, "nobody", "nothing", nil)
	errorResponse(t, err, http.StatusNotFound)
	_, _, err = gh.PullRequests.Get(c, "nobody", "nothing", 1)
	errorResponse(t, err, http.StatusNotFound)
	f.AddRepo(repo)
	_, _, err = gh.PullRequests.Get(c, owner, name, 1)
	errorResponse(t, err, http.StatusNotFound)
	resp, _ := rawGet(t, f.APIURL()+"no/such/route", tok)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown route: %d", resp.StatusCode)
	}
	// Repositories are found case-insensitively, as on GitHub.
	r, _, err := gh.Repositories.Get(c, "ACME", "Shop")
	if err != nil || r.GetFullName() != repo {
		t.Fatalf("GET repo: %v %v", r.GetFullName(), err)
	}
	if got := f.Counters().Route(githubfake.RouteUnknown, http.StatusNotFound); got != 1 {
		t.Fatalf("unknown route counted %d times", got)
	}
}

func TestGHEPrefix(t *testing.T) {
	f := newFake(t, githubfake.Options{GHEPrefix: true})
	openPRs(t, f, 3)
	if !strings.HasSuffix(f.APIURL(), "/api/v3/") {
		t.Fatalf("APIURL = %s", f.APIURL())
	}
	gh, err := github.NewClient(&http.Client{Transport: transport(t, tok, revalidating)}).WithEnterpriseURLs(f.URL(), f.URL())
	if err != nil {
		t.Fatal(err)
	}
	if gh.BaseURL.String() != f.APIURL() {
		t.Fatalf("go-github base = %s, fake API = %s", gh.BaseURL, f.APIURL())
	}
	c := ctx(t)
	prs, resp, err := listOpen(c, gh, 2, 1)
	if err != nil || len(prs) != 2 {
		t.Fatalf("list: %d %v", len(prs), err)
	}
	if !strings.Contains(resp.Header.Get("Link"), "/api/v3/repositories/") || resp.NextPage != 2 {
		t.Fatalf("Link = %s", resp.Header.Get("Link"))
	}
	if !strings.HasPrefix(prs[0].GetURL(), f.APIURL()+"repos/acme/shop/pulls/") {
		t.Fatalf("url = %s", prs[0].GetURL())
	}
	if _, _, err := listOpen(c, gh, 2, 1); err != nil {
		t.Fatal(err)
	}
	if f.Counters().NotModified != 1 {
		t.Fatal("no 304 under the GHE prefix")
	}
	if resp, _ := rawGet(t, f.URL()+"repos/acme/shop/pulls", tok); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("API outside /api/v3: %d, want 404", resp.StatusCode)
	}
}
