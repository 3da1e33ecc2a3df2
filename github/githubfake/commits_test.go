package githubfake_test

import (
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
