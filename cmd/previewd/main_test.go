package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/state"
)

// The test binary doubles as the previewd binary for the kill test.
const asMain = "PREVIEWD_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
		return
	}
	e2e.Main(m)
}

func TestUsageAndVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errb, os.Getenv); code != 0 || !strings.HasPrefix(out.String(), "previewd ") {
		t.Errorf("version: code %d out %q", code, out.String())
	}
	if code := run(context.Background(), []string{"bogus"}, &out, &errb, os.Getenv); code != 1 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("bogus: code %d err %q", code, errb.String())
	}
	errb.Reset()
	if code := run(context.Background(), []string{"plan"}, &out, &errb, os.Getenv); code != 1 || !strings.Contains(errb.String(), "--config is required") {
		t.Errorf("plan without config: code %d err %q", code, errb.String())
	}
}

// snapshot is everything plan must not change.
func snapshot(t *testing.T, e *e2e.Env) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	c := e.GH.Counters()
	fmt.Fprintf(&b, "github mutations=%d comments=%d\n", c.Mutations, len(e.GH.Comments(e.Repo, 1))+len(e.GH.Comments(e.Repo, 2))+len(e.GH.Comments(e.Repo, 3)))
	conn, err := pgx.Connect(ctx, e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SELECT p::text FROM previews p ORDER BY id`,
		`SELECT a::text FROM deploy_attempts a ORDER BY id`,
		`SELECT namespace || ' ' || key || ' ' || seq::text || ' ' || md5(body) FROM helm_releases ORDER BY namespace, key`,
		`SELECT key || ' ' || md5(value) || ' ' || updated_at::text FROM http_cache ORDER BY key`,
		`SELECT version::text FROM schema_migrations ORDER BY version`,
	} {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			b.WriteString(s + "\n")
		}
		rows.Close()
	}
	nss, err := e.Kube.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ns := range nss.Items {
		if strings.Contains(ns.Name, strings.TrimPrefix(e.Repo[strings.Index(e.Repo, "/")+1:], "")) {
			names = append(names, ns.Name+"@"+ns.ResourceVersion)
			secrets, _ := e.Kube.Client.CoreV1().Secrets(ns.Name).List(ctx, metav1.ListOptions{})
			for _, s := range secrets.Items {
				names = append(names, "  secret "+s.Name+"@"+s.ResourceVersion)
			}
			deps, _ := e.Kube.Client.AppsV1().Deployments(ns.Name).List(ctx, metav1.ListOptions{})
			for _, d := range deps.Items {
				names = append(names, "  deployment "+d.Name+"@"+d.ResourceVersion)
			}
		}
	}
	sort.Strings(names)
	b.WriteString(strings.Join(names, "\n"))
	return b.String()
}

// TestPlanWritesNothing: `previewd plan` prints the next cycle's actions
// and changes nothing in GitHub, the cluster or PostgreSQL.
func TestPlanWritesNothing(t *testing.T) {
	e := e2e.New(t, "")
	d := e.Daemon(false)
	n1 := e.Open("One", "one", e2e.SHA("p1"))
	n3 := e.Open("Three", "three", e2e.SHA("p3"))
	e.MustRunOnce(d)
	n2 := e.Open("Two", "two", e2e.SHA("p2"))
	if err := e.GH.Push(e.Repo, n1, e2e.SHA("p1b")); err != nil {
		t.Fatal(err)
	}
	if err := e.GH.ClosePR(e.Repo, n3); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, e)

	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"plan", "--config", e.ConfigPath}, &out, &errb, e.Getenv)
	if code != 2 {
		t.Fatalf("plan exit code %d, want 2 (changes planned); stderr:\n%s", code, errb.String())
	}
	t.Logf("plan output:\n%s", out.String())
	want := []string{
		fmt.Sprintf("%s#%d deploy  %s %s → %s (new SHA)", e.Repo, n1, e.NS(n1), e2e.SHA("p1")[:7], e2e.SHA("p1b")[:7]),
		fmt.Sprintf("%s#%d delete  %s %s (PR closed)", e.Repo, n3, e.NS(n3), e2e.SHA("p3")[:7]),
		fmt.Sprintf("%s#%d deploy  %s %s (new preview)", e.Repo, n2, e.NS(n2), e2e.SHA("p2")[:7]),
	} // sorted by PR number: n1=1, n3=2, n2=3
	if got := strings.TrimSpace(out.String()); got != strings.Join(want, "\n") {
		t.Errorf("plan:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	out.Reset()
	if code := run(context.Background(), []string{"plan", "--config", e.ConfigPath, "--output", "json"}, &out, &errb, e.Getenv); code != 2 {
		t.Fatalf("plan --output json exit %d", code)
	}
	var js struct {
		Actions []struct {
			Action, Repo, Namespace, SHA string
			PR                           int
		} `json:"actions"`
	}
	if err := json.Unmarshal(out.Bytes(), &js); err != nil || len(js.Actions) != 3 || js.Actions[1].Action != "delete" || js.Actions[1].PR != n3 {
		t.Fatalf("json plan: %v\n%s", err, out.String())
	}

	if after := snapshot(t, e); after != before {
		t.Fatalf("plan changed something.\nbefore:\n%s\nafter:\n%s", before, after)
	}

	e.MustRunOnce(d)
	out.Reset()
	if code := run(context.Background(), []string{"plan", "--config", e.ConfigPath}, &out, &errb, e.Getenv); code != 0 || !strings.Contains(out.String(), "No changes") {
		t.Errorf("plan after apply: code %d\n%s", code, out.String())
	}
}

func startDaemon(t *testing.T, e *e2e.Env, args ...string) (*exec.Cmd, *e2e.SyncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"run", "--config", e.ConfigPath, "--log-format", "text"}, args...)...)
	cmd.Env = append(os.Environ(), asMain+"=1", "TEST_GH_TOKEN="+e.Token())
	logs := &e2e.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, logs
}

// TestKillMidDeploy: the daemon is killed (SIGKILL) at several points of a
// deploy; the next start converges with no release left pending and
// exactly one comment.
func TestKillMidDeploy(t *testing.T) {
	e := e2e.New(t, "")
	ctx := context.Background()
	cfgText, _ := os.ReadFile(e.ConfigPath)
	if err := os.WriteFile(e.ConfigPath, []byte(strings.Replace(string(cfgText), "deploy_timeout: 60s", "deploy_timeout: 10s\nhelm_timeout: 10s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	n := e.Open("Kill me", "kill", e2e.SHA("k0"))
	var last string
	for i, delay := range []time.Duration{300 * time.Millisecond, 900 * time.Millisecond, 1500 * time.Millisecond, 2500 * time.Millisecond} {
		last = e2e.SHA(fmt.Sprint("k", i+1))
		if err := e.GH.Push(e.Repo, n, last); err != nil {
			t.Fatal(err)
		}
		cmd, logs := startDaemon(t, e)
		time.Sleep(delay)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		rel, _ := e.Release(n)
		t.Logf("killed after %s: release exists=%v status=%q rev=%d; last log line: %s", delay, rel.Exists, rel.Status, rel.Revision, lastLine(logs.String()))
	}
	// A pending release is only taken over once it is older than a Helm
	// operation may last (helm_timeout 10s + 15 s: another process may
	// still be at work on it).
	if rel, _ := e.Release(n); rel.Locked() {
		wait := time.Until(rel.Updated.Add(26 * time.Second))
		t.Logf("release left %s by the kill; waiting %s for it to be stale", rel.Status, wait.Round(time.Second))
		time.Sleep(wait)
	}
	cmd, logs := startDaemon(t, e, "--once")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("run --once after kills failed: %v\n%s", err, logs.String())
	}
	rel, err := e.Release(n)
	if err != nil || !rel.Exists || rel.Status != "deployed" {
		t.Fatalf("release after recovery: %+v %v", rel, err)
	}
	if img := e.DeploymentImage(n); img != "registry.example.com/acme/web:"+last {
		t.Errorf("image after recovery = %q, want tag %s", img, last)
	}
	st, err := state.Open(ctx, e.DBURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p, _, _ := st.Get(ctx, model.Key{Repo: e.Repo, Number: n})
	if p.Status != model.StatusReady || p.DeployedSHA != last {
		t.Errorf("row after recovery: status %s deployed %s", p.Status, p.DeployedSHA)
	}
	c := e.OneComment(n)
	if !strings.Contains(c.Body, "Preview ready") || !strings.Contains(c.Body, last[:7]) {
		t.Errorf("comment after recovery:\n%s", c.Body)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func httpGet(url string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDaemonEndpointsAndSIGTERM: the daemon serves /healthz, /readyz after
// its first good cycle, and the metrics an operator alerts on; SIGTERM in
// the middle of a deploy exits 0 and leaves no release pending.
func TestDaemonEndpointsAndSIGTERM(t *testing.T) {
	e := e2e.New(t, "")
	n := e.Open("Metrics", "metrics", e2e.SHA("m1"))
	cmd, logs := startDaemon(t, e)
	defer func() { _ = cmd.Process.Kill() }()
	base := "http://" + e.Listen
	waitFor(t, "/healthz", 20*time.Second, func() bool { c, _ := httpGet(base + "/healthz"); return c == 200 })
	waitFor(t, "/readyz", 30*time.Second, func() bool { c, _ := httpGet(base + "/readyz"); return c == 200 })
	waitFor(t, "the preview to be ready", 30*time.Second, func() bool {
		cs := e.BotComments(n)
		return len(cs) == 1 && strings.Contains(cs[0].Body, "Preview ready")
	})
	time.Sleep(2500 * time.Millisecond) // a few idle 1 s cycles
	code, metrics := httpGet(base + "/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, re := range []string{
		`previewd_deploy_latency_seconds_count 1\n`,
		`previewd_previews\{state="ready"\} 1\n`,
		`previewd_deploy_attempts_total\{outcome="ready"\} 1\n`,
		`previewd_github_requests_total\{outcome="not_modified"\} [1-9]`,
		`previewd_github_rate_limit_remaining [1-9]`,
		`previewd_last_successful_sync_timestamp_seconds [1-9]`,
		`previewd_oldest_in_flight_deploy_age_seconds 0\n`,
		`previewd_reconcile_cycles_total\{result="ok"\} [1-9]`,
	} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("/metrics lacks %s", re)
		}
	}
	if strings.Contains(metrics, e.Token()) || strings.Contains(logs.String(), e.Token()) {
		t.Error("the GitHub token appears in metrics or logs")
	}

	if err := e.GH.Push(e.Repo, n, e2e.SHA("m2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new deploy to start", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "deploying") && strings.Count(logs.String(), "msg=deploying") >= 2
	})
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("daemon did not stop within 60 s of SIGTERM")
	}
	t.Logf("stopped %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	rel, err := e.Release(n)
	if err != nil || rel.Locked() {
		t.Fatalf("release after SIGTERM: %+v %v", rel, err)
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("no clean stop in the log:\n%s", lastLine(logs.String()))
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func isLeader(addr string) (bool, bool) {
	code, body := httpGet("http://" + addr + "/metrics")
	if code != 200 {
		return false, false
	}
	return strings.Contains(body, "\npreviewd_leader 1\n"), strings.Contains(body, "\npreviewd_leader 0\n")
}

// twoDaemons starts two daemons of e's instance (stopped, even when frozen,
// when the test ends) and waits until one leads and the other stands by.
func twoDaemons(t *testing.T, e *e2e.Env) (addrs []string, cmds []*exec.Cmd, logs []*e2e.SyncBuffer, leader int) {
	t.Helper()
	addrs = []string{freeAddr(t), freeAddr(t)}
	for _, a := range addrs {
		c, l := startDaemon(t, e, "--listen", a)
		cmds, logs = append(cmds, c), append(logs, l)
		t.Cleanup(func() { _ = c.Process.Signal(syscall.SIGCONT); _ = c.Process.Kill(); _ = c.Wait() })
	}
	leader = -1
	waitFor(t, "one leader and one standby", 30*time.Second, func() bool {
		l0, s0 := isLeader(addrs[0])
		l1, s1 := isLeader(addrs[1])
		switch {
		case l0 && s1:
			leader = 0
		case l1 && s0:
			leader = 1
		}
		return leader >= 0
	})
	return addrs, cmds, logs, leader
}

// TestLeaderElectionTwoProcesses: two daemons of one instance, one acts;
// kill it and the standby takes over and deploys the next push.
func TestLeaderElectionTwoProcesses(t *testing.T) {
	e := e2e.New(t, "")
	n := e.Open("Leader", "leader", e2e.SHA("l1"))
	addrs, cmds, logs, leader := twoDaemons(t, e)
	standby := 1 - leader
	waitFor(t, "the preview to be ready", 30*time.Second, func() bool {
		cs := e.BotComments(n)
		return len(cs) == 1 && strings.Contains(cs[0].Body, "Preview ready")
	})
	if code, body := httpGet("http://" + addrs[standby] + "/readyz"); code != 200 {
		t.Errorf("standby /readyz = %d %s; a standby must be ready to take over", code, body)
	}
	if strings.Contains(logs[standby].String(), "msg=deploying") {
		t.Errorf("the standby deployed while the leader was alive:\n%s", logs[standby].String())
	}

	_ = cmds[leader].Process.Signal(syscall.SIGKILL)
	_ = cmds[leader].Wait()
	killed := time.Now()
	if err := e.GH.Push(e.Repo, n, e2e.SHA("l2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby to take over and deploy the push", 60*time.Second, func() bool {
		cs := e.BotComments(n)
		return len(cs) == 1 && strings.Contains(cs[0].Body, "Preview ready") && strings.Contains(cs[0].Body, e2e.SHA("l2")[:7])
	})
	t.Logf("leader killed → standby deployed the push and reported Ready: %s", time.Since(killed).Round(time.Millisecond))
	if l, _ := isLeader(addrs[standby]); !l {
		t.Error("the standby does not report previewd_leader 1")
	}
	if img := e.DeploymentImage(n); img != "registry.example.com/acme/web:"+e2e.SHA("l2") {
		t.Errorf("image = %q", img)
	}
}

// TestLeaderFrozen: the leader is frozen (kill -STOP), so its PostgreSQL
// session, and the lock, stay. The standby takes over once the leader's
// lease has expired and deploys a push within 30 s; the old leader, thawed,
// steps down instead of acting.
func TestLeaderFrozen(t *testing.T) {
	e := e2e.New(t, "")
	n := e.Open("Frozen", "frozen", e2e.SHA("f1"))
	addrs, cmds, logs, leader := twoDaemons(t, e)
	standby := 1 - leader
	waitFor(t, "the preview to be ready", 30*time.Second, func() bool {
		cs := e.BotComments(n)
		return len(cs) == 1 && strings.Contains(cs[0].Body, "Preview ready")
	})

	if err := cmds[leader].Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	if err := e.GH.Push(e.Repo, n, e2e.SHA("f2")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the standby to take over and deploy the push", 60*time.Second, func() bool {
		cs := e.BotComments(n)
		return len(cs) == 1 && strings.Contains(cs[0].Body, "Preview ready") && strings.Contains(cs[0].Body, e2e.SHA("f2")[:7])
	})
	took := time.Since(frozen)
	t.Logf("leader frozen → standby deployed the push and reported Ready: %s", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("takeover took %s, want within 30 s", took)
	}
	if !strings.Contains(logs[standby].String(), "ended its PostgreSQL session to take over") {
		t.Errorf("the standby did not say it broke the expired lease:\n%s", logs[standby].String())
	}

	// Thawed, the old leader finds its session gone and stands by.
	deploysBefore := strings.Count(logs[leader].String(), "msg=deploying")
	if err := cmds[leader].Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old leader to step down", 30*time.Second, func() bool {
		l, s := isLeader(addrs[leader])
		return !l && s && strings.Contains(logs[leader].String(), "lost the leader lock")
	})
	if l, _ := isLeader(addrs[standby]); !l {
		t.Error("the new leader does not report previewd_leader 1")
	}
	if _, body := httpGet("http://" + addrs[leader] + "/metrics"); strings.Contains(body, "previewd_repository_up{") {
		t.Error("the old leader still exports per-repository series next to the new leader's")
	}
	if after := strings.Count(logs[leader].String(), "msg=deploying"); after != deploysBefore {
		t.Errorf("the thawed old leader deployed %d times", after-deploysBefore)
	}
}
