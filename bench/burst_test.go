package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/state"
)

// burstRun is one burst of new PRs at one max_parallel_deploys, then the
// same PRs closed at once.
type burstRun struct {
	MaxParallel int     `json:"max_parallel_deploys"`
	PRs         int     `json:"prs"`
	IntervalS   float64 `json:"interval_seconds"`
	// From the moment the PRs were opened (all at once) in the fake.
	FirstDeployStartS float64 `json:"first_deploy_start_seconds"`
	AllReadyS         float64 `json:"all_ready_seconds"`
	// From the first deploy start to the last Ready: the deploy
	// throughput without the poll interval.
	DeployWindowS float64 `json:"deploy_window_seconds"`
	PerMinute     float64 `json:"ready_per_minute"`
	// Per PR: SHA first seen → Ready (includes waiting for a slot).
	LatencyP50S float64 `json:"pr_latency_p50_seconds"`
	LatencyP95S float64 `json:"pr_latency_p95_seconds"`
	LatencyMaxS float64 `json:"pr_latency_max_seconds"`
	// Every PR's comment says "Preview ready" for its SHA: GitHub's
	// mutation spacing (1 s) paces the comment writes.
	AllCommentsS float64 `json:"all_comments_ready_seconds"`
	Ready        int     `json:"ready"`
	Failed       int     `json:"failed_attempts"`
	// The failed attempts' errors (first lines).
	FailedErrors []string `json:"failed_attempt_errors,omitempty"`
	// Daemon process, over the burst.
	Usage usage `json:"daemon"`
	// API server responses with status ≥ 400 during the burst, by code
	// (404s are Helm's and previewd's existence checks).
	APIServerCodes  map[string]int `json:"apiserver_codes_ge_400"`
	APIServerErrors int            `json:"apiserver_errors_5xx_429"`
	DaemonErrorLogs int            `json:"daemon_error_log_lines"`
	// Average cores used by each process from the PRs' opening to the
	// last Ready (bench.test: the GitHub fake and the harness).
	CoresByProcess map[string]float64 `json:"cores_by_process"`
	// Cleanup: the same PRs closed at once → every namespace gone.
	CleanupS        float64        `json:"cleanup_all_namespaces_gone_seconds"`
	CleanupRowsS    float64        `json:"cleanup_all_rows_deleted_seconds"`
	CleanupCodes    map[string]int `json:"cleanup_apiserver_codes_ge_400"`
	CleanupDeleteOK float64        `json:"cleanup_deletions_ok"`
}

type burstResult struct {
	Scale    string            `json:"scale"`
	Runs     []burstRun        `json:"runs"`
	Headline map[string]Figure `json:"headline"`
}

// TestBurst opens PREVIEWD_BENCH_BURST (50) PRs at once in front of an
// idle daemon (the real binary), measures until all are Ready at
// max_parallel_deploys 4, 8 and 16, then closes them all at once and
// measures until every namespace is gone (scenarios 4 and 5).
func TestBurst(t *testing.T) {
	gate(t)
	n := envInt("PREVIEWD_BENCH_BURST", 50)
	interval := 5 * time.Second
	res := burstResult{Scale: fmt.Sprintf("%d PRs, 10 repositories", n), Headline: map[string]Figure{}}
	for _, par := range parallelisms() {
		r := burst(t, n, par, interval)
		res.Runs = append(res.Runs, r)
		res.Headline[fmt.Sprintf("burst.p%d.all_ready_seconds", par)] = Figure{r.AllReadyS, "s", lower}
		res.Headline[fmt.Sprintf("burst.p%d.peak_rss_mib", par)] = Figure{r.Usage.PeakRSSMiB, "MiB", lower}
		res.Headline[fmt.Sprintf("cleanup.p%d.all_gone_seconds", par)] = Figure{r.CleanupS, "s", lower}
		fmt.Printf("BURST max_parallel_deploys=%d: %d PRs opened at once → first deploy %.1f s, all Ready %.1f s (deploy window %.1f s, %.1f/min; per PR p50 %.1f s p95 %.1f s max %.1f s); comments all final %.1f s; daemon peak RSS %.1f MiB, CPU avg %.2f / peak %.2f cores; API server ≥400 %v, 5xx/429 %d; failed attempts %d\n",
			par, n, r.FirstDeployStartS, r.AllReadyS, r.DeployWindowS, r.PerMinute, r.LatencyP50S, r.LatencyP95S, r.LatencyMaxS,
			r.AllCommentsS, r.Usage.PeakRSSMiB, r.Usage.CPUCoresAvg, r.Usage.CPUCoresPeak1, r.APIServerCodes, r.APIServerErrors, r.Failed)
		fmt.Printf("  cores used during the burst, by process: %v\n", r.CoresByProcess)
		fmt.Printf("CLEANUP max_parallel_deploys=%d: %d PRs closed at once → every namespace gone in %.1f s (rows deleted %.1f s)\n",
			par, n, r.CleanupS, r.CleanupRowsS)
	}
	if err := WriteResult(resultsFile, "burst_and_cleanup", res); err != nil {
		t.Error(err)
	}
}

func parallelisms() []int {
	if v := os.Getenv("PREVIEWD_BENCH_BURST_PARALLEL"); v != "" {
		var out []int
		for _, f := range strings.Split(v, ",") {
			var p int
			if _, err := fmt.Sscan(f, &p); err == nil && p > 0 {
				out = append(out, p)
			}
		}
		return out
	}
	return []int{4, 8, 16}
}

func burst(t *testing.T, n, par int, interval time.Duration) burstRun {
	r := burstRun{MaxParallel: par, PRs: n, IntervalS: interval.Seconds()}
	t.Run(fmt.Sprintf("parallel-%d", par), func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		defer cancel()
		const repos = 10
		w := newWorld(t, repos, 0, par)
		w.writeConfig(interval.String())
		addNodes(t, w.kube, n)
		p := w.startDaemon(ctx)
		st, err := state.Open(ctx, w.dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()

		codes0 := w.apiServerCodes(ctx)
		smp := p.startSampler(200 * time.Millisecond)
		cpu0 := cpuByProcess()
		opened := time.Now()
		type pr struct {
			repo string
			n    int
		}
		var prs []pr
		for i := 0; i < n; i++ {
			repo := w.repos[i%repos]
			prs = append(prs, pr{repo, w.openPR(repo, i/repos)})
		}
		// Until every row is Ready (or failed for good).
		var rows []model.Preview
		for {
			rows, err = st.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			done := 0
			for _, row := range rows {
				if row.Status == model.StatusReady || (row.Status == model.StatusFailed && row.NextAttemptAt.IsZero()) {
					done++
				}
			}
			if len(rows) == n && done == n {
				r.CoresByProcess = coresUsed(cpu0, cpuByProcess(), time.Since(opened))
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("burst: %d of %d done after %s\n%s", done, n, time.Since(opened), tail(p.logs.String(), 30))
			}
			time.Sleep(250 * time.Millisecond)
		}
		var first, last time.Time
		var lat []float64
		for _, row := range rows {
			if row.Status != model.StatusReady {
				continue
			}
			r.Ready++
			if first.IsZero() || row.DeployStartedAt.Before(first) {
				first = row.DeployStartedAt
			}
			if row.ReadyAt.After(last) {
				last = row.ReadyAt
			}
			lat = append(lat, row.ReadyAt.Sub(row.SHAFirstSeenAt).Seconds())
		}
		// The first attempt's start: DeployStartedAt is the last attempt's.
		for _, row := range rows {
			as, err := st.Attempts(ctx, row.Key())
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range as {
				if a.StartedAt.Before(first) {
					first = a.StartedAt
				}
				if a.Outcome == model.OutcomeFailed {
					r.Failed++
					r.FailedErrors = append(r.FailedErrors, fmt.Sprintf("%s attempt %d: %s", row.Key(), a.Attempt, firstLines(a.Error, 3)))
				}
			}
		}
		if r.Ready == 0 {
			t.Fatalf("burst at max_parallel_deploys %d: no preview Ready\n%s", par, tail(p.logs.String(), 30))
		}
		r.FirstDeployStartS = round1(first.Sub(opened).Seconds())
		r.AllReadyS = round1(last.Sub(opened).Seconds())
		r.DeployWindowS = round1(last.Sub(first).Seconds())
		if r.DeployWindowS > 0 {
			r.PerMinute = round1(float64(r.Ready) / last.Sub(first).Minutes())
		}
		r.LatencyP50S, r.LatencyP95S, r.LatencyMaxS = round1(percentile(lat, .5)), round1(percentile(lat, .95)), round1(percentile(lat, 1))
		r.Usage = summarize(smp.stop())
		codes1 := w.apiServerCodes(ctx)
		r.APIServerCodes = codeDelta(codes0, codes1)
		for code, c := range r.APIServerCodes {
			if code == "429" || code[0] == '5' {
				r.APIServerErrors += c
			}
		}
		// Until every Ready preview's comment says so.
		ready := map[model.Key]bool{}
		for _, row := range rows {
			ready[row.Key()] = row.Status == model.StatusReady
		}
		for _, x := range prs {
			for ready[model.Key{Repo: x.repo, Number: x.n}] {
				cs := w.gh.Comments(x.repo, x.n)
				if len(cs) > 0 && strings.Contains(cs[len(cs)-1].Body, "Preview ready") {
					break
				}
				if ctx.Err() != nil {
					t.Fatalf("comment of %s#%d not final: %v", x.repo, x.n, cs)
				}
				time.Sleep(250 * time.Millisecond)
			}
		}
		r.AllCommentsS = round1(time.Since(opened).Seconds())
		for _, e := range r.FailedErrors {
			t.Logf("failed attempt: %s", e)
		}
		if r.Ready != n {
			t.Errorf("burst at max_parallel_deploys %d: %d of %d Ready", par, r.Ready, n)
		}

		// Scenario 5: close them all at once.
		codes2 := w.apiServerCodes(ctx)
		closed := time.Now()
		for _, x := range prs {
			if err := w.gh.ClosePR(x.repo, x.n); err != nil {
				t.Fatal(err)
			}
		}
		sel := metav1.ListOptions{LabelSelector: kube.LabelInstance + "=" + w.instance}
		gone := false
		for !gone || r.CleanupRowsS == 0 {
			if !gone {
				nss, err := w.kube.Client.CoreV1().Namespaces().List(ctx, sel)
				if err == nil && len(nss.Items) == 0 {
					gone = true
					r.CleanupS = round1(time.Since(closed).Seconds())
				}
			}
			if r.CleanupRowsS == 0 {
				// List leaves out deleted rows.
				rows, err := st.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(rows) == 0 {
					r.CleanupRowsS = round1(time.Since(closed).Seconds())
				}
			}
			if ctx.Err() != nil {
				t.Fatalf("cleanup not done after %s\n%s", time.Since(closed), tail(p.logs.String(), 30))
			}
			time.Sleep(250 * time.Millisecond)
		}
		r.CleanupCodes = codeDelta(codes2, w.apiServerCodes(ctx))
		r.CleanupDeleteOK = p.metrics().Sum("previewd_namespace_deletions_total", "outcome", "ok")
		r.DaemonErrorLogs = strings.Count(p.logs.String(), "level=ERROR")
		p.stop()
		if r.DaemonErrorLogs > 0 {
			t.Logf("daemon errors:\n%s", tail(p.logs.String(), 30))
		}
	})
	return r
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " / ")
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
