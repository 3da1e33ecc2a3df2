package githubfake_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

// control calls a /_fake endpoint and decodes the answer into out (if not nil).
func control(t testing.TB, f *githubfake.Server, method, path string, in, out any, wantStatus int) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.URL()+"_fake/"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, data, wantStatus)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

func TestControlHTTP(t *testing.T) {
	f := githubfake.NewTestServer(t, githubfake.Options{GHEPrefix: true})
	control(t, f, "GET", "health", nil, nil, 200)
	control(t, f, "POST", "tokens", githubfake.SeedToken{Token: tok, Login: bot, Limit: 100}, nil, 201)
	var opened struct{ Number int }
	control(t, f, "POST", "repos/acme/shop/pulls", githubfake.PR{Title: "Add cart", Branch: "cart", Labels: []string{"preview"}}, &opened, 201)
	if opened.Number != 1 {
		t.Fatalf("number = %d", opened.Number)
	}
	control(t, f, "POST", "repos/acme/shop/pulls/1/push", map[string]string{"sha": "abcdef1234567890abcdef1234567890abcdef12"}, nil, 200)
	control(t, f, "PUT", "repos/acme/shop/pulls/1/labels", map[string][]string{"labels": {"preview", "big"}}, nil, 200)
	control(t, f, "PUT", "repos/acme/shop/pulls/1/draft", map[string]bool{"draft": true}, nil, 200)
	control(t, f, "POST", "repos/acme/shop/pulls/1/comments", map[string]string{"login": "alice", "body": "looks good"}, nil, 201)
	control(t, f, "PUT", "repos/acme/shop/commits/abcdef1234567890abcdef1234567890abcdef12/check-runs", githubfake.CheckRun{Name: "build", Conclusion: "success"}, nil, 200)
	control(t, f, "POST", "repos/acme/shop/commits/abcdef1234567890abcdef1234567890abcdef12/statuses", githubfake.Status{State: "success", Context: "ci"}, nil, 201)
	control(t, f, "POST", "repos/acme/shop/branches/release/1.0", map[string]string{"sha": "9999999999999999999999999999999999999999"}, nil, 200)

	var pr github.PullRequest
	control(t, f, "GET", "repos/acme/shop/pulls/1", nil, &pr, 200)
	if pr.GetHead().GetSHA() != "abcdef1234567890abcdef1234567890abcdef12" || !pr.GetDraft() || len(pr.Labels) != 2 || pr.GetComments() != 1 {
		t.Fatalf("PR = %+v", pr)
	}
	var comments []githubfake.Comment
	control(t, f, "GET", "repos/acme/shop/pulls/1/comments", nil, &comments, 200)
	if len(comments) != 1 || comments[0].Login != "alice" {
		t.Fatalf("comments = %+v", comments)
	}

	// Faults with readable durations.
	var added struct{ ID int }
	control(t, f, "POST", "faults", map[string]any{"route": githubfake.RouteListPulls, "status": 429, "times": 1, "retry_after": "5s"}, &added, 201)
	gh, err := github.NewClient(&http.Client{Transport: transport(t, tok, uncached)}).WithEnterpriseURLs(f.URL(), f.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	_, _, err = listOpen(c, gh, 100, 0)
	if er := errorResponse(t, err, 429); er.Response.Header.Get("Retry-After") != "5" {
		t.Fatalf("Retry-After = %q", er.Response.Header.Get("Retry-After"))
	}
	prs, _, err := listOpen(c, gh, 100, 0)
	if err != nil || len(prs) != 1 {
		t.Fatalf("list: %d %v", len(prs), err)
	}
	control(t, f, "POST", "faults", map[string]any{"route": "*", "delay": 0.01}, &added, 201)
	var faults map[string]githubfake.Fault
	control(t, f, "GET", "faults", nil, &faults, 200)
	if len(faults) != 1 || faults["2"].Delay != 10*time.Millisecond {
		t.Fatalf("faults = %+v", faults)
	}
	control(t, f, "DELETE", "faults/2", nil, nil, 200)
	control(t, f, "PUT", "latency", map[string]string{"latency": "1ms"}, nil, 200)
	control(t, f, "DELETE", "faults", nil, nil, 200)

	var counters githubfake.Counters
	control(t, f, "GET", "counters", nil, &counters, 200)
	if counters.Route(githubfake.RouteListPulls, 429) != 1 || counters.Route(githubfake.RouteListPulls, 200) != 1 || counters.Charged != 1 {
		t.Fatalf("counters = %+v", counters)
	}
	var reqs []githubfake.Request
	control(t, f, "GET", "requests", nil, &reqs, 200)
	if len(reqs) != 2 || reqs[1].Login != bot || reqs[1].Route != githubfake.RouteListPulls {
		t.Fatalf("requests = %+v", reqs)
	}
	control(t, f, "POST", "counters/reset", nil, nil, 200)
	if f.Counters().Requests != 0 {
		t.Fatal("counters not reset")
	}

	control(t, f, "PUT", "tokens/"+tok+"/rate", map[string]int{"remaining": 0}, nil, 200)
	var tokens []githubfake.TokenInfo
	control(t, f, "GET", "tokens", nil, &tokens, 200)
	if len(tokens) != 1 || tokens[0].Rate.Remaining != 0 || tokens[0].Rate.Limit != 100 {
		t.Fatalf("tokens = %+v", tokens)
	}

	control(t, f, "POST", "repos/acme/shop/pulls/1/merge", nil, nil, 409) // still a draft
	control(t, f, "POST", "repos/acme/shop/pulls/1/close", nil, nil, 200)
	control(t, f, "POST", "repos/acme/shop/pulls/1/reopen", nil, nil, 200)
	control(t, f, "POST", "repos/acme/shop/pulls/7/close", nil, nil, 404)
	control(t, f, "POST", "repos/acme/shop/pulls/1/explode", nil, nil, 404)
	control(t, f, "POST", "repos", map[string]string{"name": "bad"}, nil, 400)
	control(t, f, "POST", "repos", map[string]string{"name": "acme/new"}, nil, 201)
	control(t, f, "DELETE", "tokens/"+tok, nil, nil, 200)
	if _, ok := f.RateLimit(tok); ok {
		t.Fatal("token not revoked")
	}
}

func TestSeed(t *testing.T) {
	f := githubfake.NewTestServer(t, githubfake.Options{})
	seed := `{
	  "tokens": [{"token": "` + tok + `", "login": "previewd[bot]"}],
	  "repos": [{
	    "name": "acme/shop",
	    "pulls": [
	      {"title": "Add cart", "branch": "cart", "labels": ["preview"],
	       "comments": [{"login": "alice", "body": "please preview"}],
	       "check_runs": [{"name": "build", "conclusion": "success"}],
	       "statuses": [{"state": "pending", "context": "ci"}]},
	      {"title": "Old", "branch": "old", "state": "merged"},
	      {"title": "Fork", "branch": "f", "author": "eve", "from_fork": true, "draft": true}
	    ]
	  }]
	}`
	control(t, f, "POST", "seed", json.RawMessage(seed), nil, 200)

	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	prs, _, err := listOpen(c, gh, 100, 0)
	if err != nil || len(prs) != 2 {
		t.Fatalf("open = %d %v", len(prs), err)
	}
	if prs[0].GetNumber() != 3 || !prs[0].GetDraft() || !prs[0].GetHead().GetRepo().GetFork() {
		t.Fatalf("#3 = %+v", prs[0])
	}
	if got := f.Comments(repo, 1); len(got) != 1 || got[0].Login != "alice" {
		t.Fatalf("comments = %+v", got)
	}
	sha := f.HeadSHA(repo, 1)
	if st := f.Statuses(repo, sha); len(st) != 1 || st[0].Context != "ci" {
		t.Fatalf("statuses = %+v", st)
	}
	pr, _, err := gh.PullRequests.Get(c, owner, name, 2)
	if err != nil || !pr.GetMerged() {
		t.Fatalf("#2 merged = %v %v", pr.GetMerged(), err)
	}
	err = f.ApplySeed(githubfake.Seed{Repos: []githubfake.SeedRepo{{Name: "acme/x", Pulls: []githubfake.SeedPull{{State: "weird"}}}}})
	if err == nil {
		t.Fatal("a bad state was accepted")
	}
	if err := f.ApplySeed(githubfake.Seed{Repos: []githubfake.SeedRepo{{Name: "nope"}}}); err == nil {
		t.Fatal("a bad repository name was accepted")
	}
	if err := f.SetLabels("acme/none", 1); !errors.Is(err, githubfake.ErrNotFound) {
		t.Fatalf("SetLabels on an unknown repository: %v", err)
	}
}
