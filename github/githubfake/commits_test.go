package githubfake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-github/v66/github"

	"github.com/previewd/previewd/github/githubfake"
)

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestCommitStatusesAndChecks(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.OpenPR(repo, githubfake.PR{Branch: "feat/x"})
	sha := f.HeadSHA(repo, 1)
	gh := newClient(t, f, tok, revalidating)
	c := ctx(t)

	st, _, err := gh.Repositories.CreateStatus(c, owner, name, sha, &github.RepoStatus{
		State: github.String("pending"), Context: github.String("previewd"), TargetURL: github.String("https://pr-1.example.com"),
		Description: github.String("Deploying"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetCreator().GetLogin() != bot || st.GetID() == 0 {
		t.Fatalf("status = %+v", st)
	}
	f.SetStatus(repo, sha, githubfake.Status{State: "success", Context: "ci/build"})

	combined, _, err := gh.Repositories.GetCombinedStatus(c, owner, name, "feat/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if combined.GetState() != "pending" || combined.GetTotalCount() != 2 || combined.GetSHA() != sha {
		t.Fatalf("combined = %s %d %s", combined.GetState(), combined.GetTotalCount(), combined.GetSHA())
	}
	if _, _, err := gh.Repositories.CreateStatus(c, owner, name, sha[:7], &github.RepoStatus{State: github.String("success"), Context: github.String("previewd")}); err != nil {
		t.Fatalf("status on a short sha: %v", err)
	}
	combined, _, err = gh.Repositories.GetCombinedStatus(c, owner, name, sha, nil)
	if err != nil || combined.GetState() != "success" || combined.GetTotalCount() != 2 {
		t.Fatalf("combined after success = %s %d %v", combined.GetState(), combined.GetTotalCount(), err)
	}
	if got := f.Statuses(repo, sha); len(got) != 3 || got[0].Creator != bot || got[2].State != "success" {
		t.Fatalf("statuses = %+v", got)
	}

	_, _, err = gh.Repositories.CreateStatus(c, owner, name, sha, &github.RepoStatus{State: github.String("done")})
	errorResponse(t, err, http.StatusUnprocessableEntity)
	_, _, err = gh.Repositories.CreateStatus(c, owner, name, sha, &github.RepoStatus{State: github.String("success"), Description: github.String(strings.Repeat("d", 141))})
	errorResponse(t, err, http.StatusUnprocessableEntity)
	_, _, err = gh.Repositories.CreateStatus(c, owner, name, "ffffffffffffffffffffffffffffffffffffffff", &github.RepoStatus{State: github.String("success")})
	errorResponse(t, err, http.StatusUnprocessableEntity)
	_, _, err = gh.Repositories.GetCombinedStatus(c, owner, name, "no-such-branch", nil)
	errorResponse(t, err, http.StatusNotFound)

	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "build", Status: "in_progress"})
	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "lint", Conclusion: "success"})
	runs, _, err := gh.Checks.ListCheckRunsForRef(c, owner, name, "feat/x", nil)
	if err != nil || runs.GetTotal() != 2 {
		t.Fatalf("check runs = %+v %v", runs, err)
	}
	if r := runs.CheckRuns[0]; r.GetName() != "build" || r.GetStatus() != "in_progress" || r.Conclusion != nil || r.GetHeadSHA() != sha {
		t.Fatalf("build = %+v", r)
	}
	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "build", Conclusion: "failure"})
	runs, _, err = gh.Checks.ListCheckRunsForRef(c, owner, name, sha, &github.ListCheckRunsOptions{CheckName: github.String("build")})
	if err != nil || runs.GetTotal() != 1 || runs.CheckRuns[0].GetConclusion() != "failure" || runs.CheckRuns[0].GetStatus() != "completed" {
		t.Fatalf("build after completion = %+v %v", runs, err)
	}
}

func TestDeployments(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.OpenPR(repo, githubfake.PR{Branch: "feat/x"})
	sha := f.HeadSHA(repo, 1)
	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "build", Status: "in_progress"})
	gh := newClient(t, f, tok, uncached)
	c := ctx(t)
	req := func(required *[]string) *github.DeploymentRequest {
		return &github.DeploymentRequest{
			Ref: github.String("feat/x"), Environment: github.String("pr-1"), AutoMerge: github.Bool(false),
			RequiredContexts: required, TransientEnvironment: github.Bool(false),
			Payload: map[string]any{"pr": 1},
		}
	}

	// Omitting required_contexts waits for every context: a pending check
	// makes GitHub refuse the deployment.
	_, _, err := gh.Repositories.CreateDeployment(c, owner, name, req(nil))
	er := errorResponse(t, err, http.StatusConflict)
	if !strings.Contains(er.Message, "Commit status checks failed") {
		t.Fatalf("409 = %+v", er)
	}
	// An empty list skips the check.
	d1, _, err := gh.Repositories.CreateDeployment(c, owner, name, req(&[]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if d1.GetSHA() != sha || d1.GetEnvironment() != "pr-1" || d1.GetCreator().GetLogin() != bot || d1.GetTask() != "deploy" {
		t.Fatalf("deployment = %+v", d1)
	}
	_, _, err = gh.Repositories.CreateDeployment(c, owner, name, &github.DeploymentRequest{Ref: github.String("nope")})
	errorResponse(t, err, http.StatusUnprocessableEntity)

	ds, _, err := gh.Repositories.CreateDeploymentStatus(c, owner, name, d1.GetID(), &github.DeploymentStatusRequest{
		State: github.String("success"), EnvironmentURL: github.String("https://pr-1.preview.example.com"), LogURL: github.String("https://logs"),
	})
	if err != nil || ds.GetState() != "success" || ds.GetEnvironmentURL() != "https://pr-1.preview.example.com" {
		t.Fatalf("deployment status = %+v %v", ds, err)
	}
	_, _, err = gh.Repositories.CreateDeploymentStatus(c, owner, name, d1.GetID(), &github.DeploymentStatusRequest{State: github.String("great")})
	errorResponse(t, err, http.StatusUnprocessableEntity)
	_, _, err = gh.Repositories.CreateDeploymentStatus(c, owner, name, 1, &github.DeploymentStatusRequest{State: github.String("success")})
	errorResponse(t, err, http.StatusNotFound)

	// A second successful deployment of the environment marks the first
	// inactive (auto_inactive).
	d2, _, err := gh.Repositories.CreateDeployment(c, owner, name, req(&[]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := gh.Repositories.CreateDeploymentStatus(c, owner, name, d2.GetID(), &github.DeploymentStatusRequest{State: github.String("success")}); err != nil {
		t.Fatal(err)
	}
	statuses, _, err := gh.Repositories.ListDeploymentStatuses(c, owner, name, d1.GetID(), nil)
	if err != nil || len(statuses) != 2 || statuses[0].GetState() != "inactive" {
		t.Fatalf("first deployment statuses (newest first) = %d %v", len(statuses), err)
	}
	list, _, err := gh.Repositories.ListDeployments(c, owner, name, &github.DeploymentsListOptions{Environment: "pr-1"})
	if err != nil || len(list) != 2 || list[0].GetID() != d2.GetID() {
		t.Fatalf("deployments (newest first) = %d %v", len(list), err)
	}
	got := f.Deployments(repo)
	if len(got) != 2 || got[0].Statuses[1].State != "inactive" || string(got[0].Payload) != `{"pr":1}` {
		t.Fatalf("Deployments = %+v", got)
	}

	// Once the check passes, omitting required_contexts works.
	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "build", Conclusion: "success"})
	if _, _, err := gh.Repositories.CreateDeployment(c, owner, name, req(nil)); err != nil {
		t.Fatal(err)
	}
}

// checksGet GETs a checks endpoint of the fake's sha and decodes its JSON.
func checksGet(t *testing.T, f *githubfake.Server, path string, out any, hdr ...string) *http.Response {
	t.Helper()
	resp, body := rawGet(t, f.APIURL()+path, tok, hdr...)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
	return resp
}

type checkRunsBody struct {
	TotalCount int `json:"total_count"`
	CheckRuns  []struct {
		ID         int64   `json:"id"`
		Name       string  `json:"name"`
		Status     string  `json:"status"`
		Conclusion *string `json:"conclusion"`
	} `json:"check_runs"`
}

type combinedBody struct {
	State      string `json:"state"`
	TotalCount int    `json:"total_count"`
	Statuses   []struct {
		Context string `json:"context"`
		State   string `json:"state"`
	} `json:"statuses"`
}

func TestChecksEndpointsAreConditionalAndPaginated(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	f.OpenPR(repo, githubfake.PR{Branch: "feat/x"})
	sha := f.HeadSHA(repo, 1)
	for i := range 120 {
		f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: fmt.Sprintf("job-%03d", i), Conclusion: "success"})
	}
	runsPath := "repos/acme/shop/commits/" + sha + "/check-runs?per_page=100"

	var page checkRunsBody
	resp := checksGet(t, f, runsPath, &page)
	if resp.StatusCode != http.StatusOK || page.TotalCount != 120 || len(page.CheckRuns) != 100 {
		t.Fatalf("page 1: %d, total %d, %d runs", resp.StatusCode, page.TotalCount, len(page.CheckRuns))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") != "private, max-age=60, s-maxage=60" || !strings.Contains(resp.Header.Get("Vary"), "Authorization") {
		t.Fatalf("headers = %v", resp.Header)
	}
	link := resp.Header.Get("Link")
	if !strings.Contains(link, `page=2>; rel="next"`) || !strings.Contains(link, "/repositories/") {
		t.Fatalf("Link = %q", link)
	}
	resp = checksGet(t, f, runsPath+"&page=2", &page)
	if resp.StatusCode != http.StatusOK || page.TotalCount != 120 || len(page.CheckRuns) != 20 || page.CheckRuns[19].Name != "job-119" {
		t.Fatalf("page 2: %d, total %d, %d runs", resp.StatusCode, page.TotalCount, len(page.CheckRuns))
	}
	if strings.Contains(resp.Header.Get("Link"), `rel="next"`) {
		t.Fatalf("last page links a next one: %q", resp.Header.Get("Link"))
	}
	// The Link URL is served too.
	next := strings.Trim(strings.TrimSpace(strings.Split(strings.Split(link, ",")[0], ";")[0]), "<>")
	if r, _ := rawGet(t, next, tok); r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d", next, r.StatusCode)
	}

	// Unchanged: a 304, not charged.
	before := remaining(t, f, tok)
	if resp := checksGet(t, f, runsPath, nil, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation = %d, want 304", resp.StatusCode)
	}
	if got := remaining(t, f, tok); got != before {
		t.Fatalf("a 304 was charged: remaining %d → %d", before, got)
	}
	// Unrelated changes in the repository leave the ETag alone.
	f.OpenPR(repo, githubfake.PR{})
	if err := f.Push(repo, 1, sha); err != nil {
		t.Fatal(err)
	}
	if resp := checksGet(t, f, runsPath, nil, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("after an unrelated change: %d, want 304", resp.StatusCode)
	}
	// A check run that changes changes the ETag.
	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "job-000", Conclusion: "failure"})
	resp = checksGet(t, f, runsPath, &page, "If-None-Match", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag || page.TotalCount != 120 || page.CheckRuns[0].Conclusion == nil || *page.CheckRuns[0].Conclusion != "failure" {
		t.Fatalf("after SetCheckRun: %d, total %d", resp.StatusCode, page.TotalCount)
	}
	etag = resp.Header.Get("ETag")

	// A re-run adds a run of the same name; both are listed.
	id := f.AddCheckRun(repo, sha, githubfake.CheckRun{Name: "job-000", Status: "in_progress"})
	resp = checksGet(t, f, runsPath+"&page=2", &page)
	if resp.StatusCode != http.StatusOK || page.TotalCount != 121 || len(page.CheckRuns) != 21 {
		t.Fatalf("after a re-run: total %d, %d on page 2", page.TotalCount, len(page.CheckRuns))
	}
	if last := page.CheckRuns[20]; last.ID != id || last.Name != "job-000" || last.Status != "in_progress" || last.ID == page.CheckRuns[0].ID {
		t.Fatalf("re-run = %+v", last)
	}
	if resp := checksGet(t, f, runsPath, nil, "If-None-Match", etag); resp.StatusCode != http.StatusOK {
		t.Fatalf("page 1 after a re-run: %d, want 200 (total_count changed)", resp.StatusCode)
	}
	// SetCheckRun updates the newest run of the name.
	f.SetCheckRun(repo, sha, githubfake.CheckRun{Name: "job-000", Conclusion: "success"})
	runs := f.CheckRuns(repo, sha)
	if len(runs) != 121 || runs[0].Conclusion != "failure" || runs[120].ID != id || runs[120].Conclusion != "success" {
		t.Fatalf("CheckRuns = %d, first %+v, last %+v", len(runs), runs[0], runs[120])
	}
	if n := f.RemoveCheckRuns(repo, sha, "job-000"); n != 2 {
		t.Fatalf("removed %d runs, want 2", n)
	}
	if checksGet(t, f, runsPath, &page); page.TotalCount != 119 || page.CheckRuns[0].Name != "job-001" {
		t.Fatalf("after removal: total %d, first %s", page.TotalCount, page.CheckRuns[0].Name)
	}
	if n := f.RemoveCheckRuns("acme/none", sha, "x"); n != 0 {
		t.Fatalf("removed %d from an unknown repository", n)
	}

	// The combined status: latest per context, paginated, conditional.
	statusPath := "repos/acme/shop/commits/" + sha + "/status?per_page=100"
	var combined combinedBody
	if resp := checksGet(t, f, statusPath, &combined); resp.StatusCode != http.StatusOK || combined.State != "pending" || combined.TotalCount != 0 || len(combined.Statuses) != 0 {
		t.Fatalf("no statuses: %d %+v", resp.StatusCode, combined)
	}
	for i := range 105 {
		f.SetStatus(repo, sha, githubfake.Status{State: "pending", Context: fmt.Sprintf("ctx-%03d", i)})
	}
	for i := range 105 {
		f.SetStatus(repo, sha, githubfake.Status{State: "success", Context: fmt.Sprintf("ctx-%03d", i)})
	}
	resp = checksGet(t, f, statusPath, &combined)
	if resp.StatusCode != http.StatusOK || combined.State != "success" || combined.TotalCount != 105 || len(combined.Statuses) != 100 ||
		!strings.Contains(resp.Header.Get("Link"), `page=2>; rel="next"`) || resp.Header.Get("Cache-Control") != "private, max-age=60, s-maxage=60" {
		t.Fatalf("combined page 1: %d %s %d %d %v", resp.StatusCode, combined.State, combined.TotalCount, len(combined.Statuses), resp.Header)
	}
	etag = resp.Header.Get("ETag")
	if checksGet(t, f, statusPath+"&page=2", &combined); len(combined.Statuses) != 5 || combined.Statuses[4].Context != "ctx-104" {
		t.Fatalf("combined page 2: %+v", combined)
	}
	f.OpenPR(repo, githubfake.PR{}) // moves pushed_at and open_issues
	before = remaining(t, f, tok)
	if resp := checksGet(t, f, statusPath, nil, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("combined status after an unrelated change: %d, want 304", resp.StatusCode)
	}
	if got := remaining(t, f, tok); got != before {
		t.Fatalf("a 304 was charged: remaining %d → %d", before, got)
	}
	f.SetStatus(repo, sha, githubfake.Status{State: "error", Context: "ctx-104"})
	resp = checksGet(t, f, statusPath, &combined, "If-None-Match", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag || combined.State != "failure" || combined.TotalCount != 105 {
		t.Fatalf("after an error status: %d %s %d", resp.StatusCode, combined.State, combined.TotalCount)
	}

	// Unknown repositories are 404s.
	for _, p := range []string{"repos/acme/none/commits/" + sha + "/check-runs", "repos/acme/none/commits/" + sha + "/status"} {
		if resp := checksGet(t, f, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestCheckRunControl(t *testing.T) {
	f := newFake(t, githubfake.Options{})
	const sha = "abcdef1234567890abcdef1234567890abcdef12"
	base := "repos/acme/shop/commits/" + sha + "/check-runs"
	control(t, f, "PUT", base, githubfake.CheckRun{Name: "ci / build", Conclusion: "failure"}, nil, 200)
	var added struct{ ID int64 }
	control(t, f, "POST", base, githubfake.CheckRun{Name: "ci / build", Status: "in_progress"}, &added, 201)
	control(t, f, "POST", base, githubfake.CheckRun{}, nil, 400)
	var runs []githubfake.CheckRun
	control(t, f, "GET", base, nil, &runs, 200)
	if len(runs) != 2 || runs[1].ID != added.ID || runs[0].Conclusion != "failure" || runs[1].Status != "in_progress" {
		t.Fatalf("runs = %+v", runs)
	}
	var removed struct{ Removed int }
	control(t, f, "DELETE", base+"/"+url.PathEscape("ci / build"), nil, &removed, 200)
	if removed.Removed != 2 {
		t.Fatalf("removed = %d", removed.Removed)
	}
	control(t, f, "GET", base, nil, &runs, 200)
	if len(runs) != 0 {
		t.Fatalf("runs after removal = %+v", runs)
	}
}
