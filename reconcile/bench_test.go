package reconcile

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/previewd/previewd/reconcile/model"
)

// benchObservation is 1,000 open PRs across 100 repositories: 80% in sync,
// 10% with a new head SHA, plus 100 closed PRs (one per 10 open) whose
// namespaces still exist, and a failed row every 50 PRs.
func benchObservation() (Observation, Options) {
	const repos, perRepo = 100, 10
	shaOld := strings.Repeat("a", 40)
	shaNew := strings.Repeat("b", 40)
	obs := Observation{Cluster: model.ClusterObservation{Complete: true,
		Owned: map[string]model.Namespace{}, Foreign: map[string]bool{}, Releases: map[string]model.Release{}}}
	pol := map[string]RepoPolicy{}
	for r := 0; r < repos; r++ {
		repo := fmt.Sprintf("acme/svc-%03d", r)
		pol[repo] = RepoPolicy{}
		ro := RepoObservation{Repo: repo, Complete: true}
		for n := 1; n <= perRepo+1; n++ {
			ns := nsFor(repo, n)
			obs.Cluster.Owned[ns] = model.Namespace{Name: ns, Repo: repo, Number: n}
			obs.Cluster.Releases[ns] = model.Release{Exists: true, Status: "deployed", SHA: shaOld, Updated: now.Add(-time.Hour)}
			row := model.Preview{Repo: repo, Number: n, Namespace: ns, DesiredSHA: shaOld, DeployedSHA: shaOld,
				Status: model.StatusReady, Attempts: 1, Branch: "feature", Title: "t", CommentHash: "h"}
			if n == perRepo+1 { // closed
				ro.Closed = append(ro.Closed, Closed{Number: n, Merged: n%2 == 0})
				obs.Previews = append(obs.Previews, row)
				continue
			}
			pr := PR{Repo: repo, Number: n, SHA: shaOld, Branch: "feature", Title: "t", Author: "octocat"}
			switch {
			case n == 1: // new SHA
				pr.SHA = shaNew
			case n == 2 && r%5 == 0: // failed, retries exhausted
				row.Status, row.Attempts, row.LastError = model.StatusFailed, 3, "readiness: ImagePullBackOff"
			}
			ro.Open = append(ro.Open, pr)
			obs.Previews = append(obs.Previews, row)
		}
		obs.Repos = append(obs.Repos, ro)
	}
	o := Options{Now: now, MaxAttempts: 3, LockStaleAfter: 3 * time.Minute, NamespaceFor: nsFor, Policies: pol,
		CommentHash: func(p model.Preview) string { return "h" }}
	return obs, o
}

func BenchmarkPlan1000PRs100Repos(b *testing.B) {
	obs, o := benchObservation()
	var res Result
	b.ReportAllocs()
	for b.Loop() {
		res = Plan(obs, o)
	}
	b.ReportMetric(float64(len(res.Actions)), "actions/op")
}

// BenchmarkPlan1000PRsRealHash uses the real comment hash (render + sha256
// per row), as the daemon does.
func BenchmarkPlan1000PRsRealHash(b *testing.B) {
	obs, o := benchObservation()
	r := Renderer{maxAttempts: 3}
	o.CommentHash = r.Hash
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Plan(obs, o)
	}
}

func benchRow(status model.Status) model.Preview {
	return model.Preview{Repo: "acme/web", Number: 1234, Namespace: "pr-web-1234", Branch: "feature/some-branch_name",
		Title: "Add a thing", DesiredSHA: strings.Repeat("c", 40), DeployedSHA: strings.Repeat("c", 40), Status: status, Attempts: 1}
}

func BenchmarkRenderCommentReady(b *testing.B) {
	p := benchRow(model.StatusReady)
	info := CommentInfo{URL: "https://pr-web-1234.preview.example.com", MaxAttempts: 3}
	b.ReportAllocs()
	for b.Loop() {
		RenderComment(p, info, nil)
	}
}

func BenchmarkRenderCommentFailed8KBLogs(b *testing.B) {
	p := benchRow(model.StatusFailed)
	p.Attempts = 3
	p.LastError = "readiness: container app in CrashLoopBackOff\nback-off 40s restarting failed container\n--- logs ---\n" + crashLogs(" token=ghp_xxxxxxxxxxxxxxxxxxxx")
	info := CommentInfo{MaxAttempts: 3}
	var body string
	b.ReportAllocs()
	for b.Loop() {
		body = RenderComment(p, info, nil)
	}
	b.ReportMetric(float64(len(body)), "bytes/body")
}

// BenchmarkRenderCommentFailed8KBLogsNoRedact isolates the rendering from
// the secret-redaction regexes.
func BenchmarkRenderCommentFailed8KBLogsNoRedact(b *testing.B) {
	p := benchRow(model.StatusFailed)
	p.Attempts = 3
	p.LastError = "readiness: container app in CrashLoopBackOff\nback-off 40s restarting failed container\n--- logs ---\n" + crashLogs("")
	info := CommentInfo{MaxAttempts: 3}
	b.ReportAllocs()
	for b.Loop() {
		RenderComment(p, info, func(s string) string { return s })
	}
}

// BenchmarkPlan1000PRsRealHashFailedLogs: as RealHash, with every 10th row
// failed and carrying 8 KB of pod logs. Plan re-renders (and re-redacts) the
// comment of every row each cycle to compare its hash.
func BenchmarkPlan1000PRsRealHashFailedLogs(b *testing.B) {
	benchFailedLogs(b, false)
}

// BenchmarkPlan1000PRsCachedHashFailedLogs is the same with the daemon's
// HashCache: rows unchanged since the last cycle are not re-rendered.
func BenchmarkPlan1000PRsCachedHashFailedLogs(b *testing.B) {
	benchFailedLogs(b, true)
}

func benchFailedLogs(b *testing.B, cached bool) {
	obs, o := benchObservation()
	logs := crashLogs("")
	failed := 0
	for i := range obs.Previews {
		if i%10 == 3 {
			p := &obs.Previews[i]
			p.Status, p.Attempts = model.StatusFailed, 3
			p.LastError = "readiness: container app in CrashLoopBackOff\n--- logs ---\n" + logs
			p.UpdatedAt = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
			failed++
		}
	}
	r := Renderer{maxAttempts: 3}
	o.CommentHash = r.Hash
	if cached {
		o.CommentHash = (&HashCache{R: r}).Hash
	}
	b.ReportAllocs()
	for b.Loop() {
		Plan(obs, o)
	}
	b.ReportMetric(float64(failed), "failed_rows")
}

// crashLogs is 8 KB of a crashing app's log lines, each ending in suffix.
func crashLogs(suffix string) string {
	var logs strings.Builder
	for i := 0; logs.Len() < 8<<10; i++ {
		fmt.Fprintf(&logs, "2026-11-26T12:00:%02dZ ERROR app: connection refused to db:5432 (attempt %d)%s\n", i%60, i, suffix)
	}
	return logs.String()
}
