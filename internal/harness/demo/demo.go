// Package demo runs previewd end to end on one machine, with no accounts
// and no network: a local Kubernetes control plane (internal/testbed),
// PostgreSQL (the local server or a throwaway one), the GitHub fake
// (github/githubfake) with a sample repository and three pull requests, and
// the real previewd binary as a subprocess. It is `make demo` (cmd/demo)
// and an integration test.
//
// The demo waits until the three previews are Ready, shows that `previewd
// plan` has nothing to do, pushes to one pull request and merges another,
// waits for the redeploy and the namespace deletion, and prints what
// happened: namespaces and Helm releases, the PR comments, previewd's
// metrics and the fake's request counters.
package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/harness/testbed"
)

// Defaults of Options.
const (
	DefaultRepo     = "acme/shop"
	DefaultImage    = "registry.example.com/acme/shop"
	DefaultInterval = 2 * time.Second
	DefaultTimeout  = 4 * time.Minute
	// ModulePath identifies the source tree (charts/preview-app, cmd/previewd).
	ModulePath = "github.com/previewd/previewd"
)

// botLogin is the account the demo's personal access token belongs to.
const botLogin = "acme-previewd-bot"

// tokenEnv is the environment variable that carries the token to previewd.
const tokenEnv = "PREVIEWD_DEMO_GITHUB_TOKEN"

// Options configure Run. The zero value runs the standard demo.
type Options struct {
	// Out receives the demo's narration and report; os.Stdout when nil.
	Out io.Writer
	// Root is the previewd source tree (for charts/preview-app and, when
	// Previewd is empty, go build ./cmd/previewd); found from the working
	// directory when empty.
	Root string
	// Previewd is the previewd binary to run; empty: build it with go build.
	Previewd string
	// Kubeconfig connects to a running control plane instead of starting
	// one; the demo then deletes the namespaces it created at the end.
	Kubeconfig string
	// KubeBinDir holds the control-plane binaries; testbed.BinDir() when empty.
	KubeBinDir string
	// AdminDatabaseURL names a PostgreSQL role that may CREATE DATABASE;
	// empty: 127.0.0.1:5432 (users postgres, root) if it answers, else a
	// throwaway server started with initdb and pg_ctl.
	AdminDatabaseURL string
	// Repo is the sample repository; DefaultRepo when empty.
	Repo string
	// Instance is previewd's instance name; "demo" when empty.
	Instance string
	// Interval is previewd's poll interval; DefaultInterval when 0.
	Interval time.Duration
	// Timeout bounds the whole run, clean-up excluded; DefaultTimeout when 0.
	Timeout time.Duration
	// KeepWorkDir keeps the whole work directory (and the control plane's
	// data and logs); otherwise only previewd's log and config are kept, and
	// everything is kept on failure.
	KeepWorkDir bool
}

// Result is what a run measured.
type Result struct {
	// WorkDir holds previewd.yaml and previewd.log.
	WorkDir string
	// ControlPlane is how long the control plane took to start (0 when
	// connected to a running one).
	ControlPlane time.Duration
	// Ready is, per PR number, the time from previewd's start to the
	// preview being Ready.
	Ready map[int]time.Duration
	// Redeploy is the time from the push to PR 1 to its new preview Ready.
	Redeploy time.Duration
	// Deletion is the time from merging PR 2 to its namespace gone.
	Deletion time.Duration
	// Total is the whole run.
	Total time.Duration
	// Problems are daemon misbehaviours the demo saw (also in the error).
	Problems []string
}

// demoPR is a sample pull request.
type demoPR struct {
	githubfake.PR
	Number    int
	Namespace string
}

func samplePRs() []githubfake.PR {
	return []githubfake.PR{
		{Title: "Checkout: pay with saved cards", Branch: "feature/checkout,v2", Author: "mona",
			Body: "Adds saved cards to the checkout. The branch name has a comma on purpose: Helm's --set would split it."},
		{Title: "Fix rounding of cart totals with discounts", Branch: "fix/cart-rounding", Author: "hubot",
			Body: "Totals were off by one cent when a percentage discount applied."},
		{Title: "Search: tolerate typos in product names", Branch: "search/typo-tolerance", Author: "octocat",
			Body: "Fuzzy matching with a maximum edit distance of 2."},
	}
}

// session is one run: what was started, and how to stop it.
type session struct {
	o       Options
	out     io.Writer
	begin   time.Time
	work    string
	res     *Result
	token   string
	repo    string
	failed  bool
	outMu   sync.Mutex
	cleanMu sync.Mutex
	cleanup []func(context.Context)
	bg      sync.WaitGroup // the previewd build

	cluster    *testbed.Cluster
	ownCluster bool
	db         *database
	fake       *githubfake.Server
	fakeURL    string
	prs        []*demoPR
	configPath string
	logPath    string
	listen     string
	bin        string
	proc       *process
	http       *http.Client
}

// Run runs the demo and prints it to o.Out. It returns an error (after
// printing the relevant logs) when a step fails or previewd misbehaves.
// Everything it started is stopped before it returns.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Repo == "" {
		o.Repo = DefaultRepo
	}
	if o.Instance == "" {
		o.Instance = "demo"
	}
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	s := &session{o: o, out: o.Out, begin: time.Now(), repo: o.Repo, res: &Result{Ready: map[int]time.Duration{}},
		http: &http.Client{Timeout: 5 * time.Second}}
	runCtx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()

	err := s.run(runCtx)
	if err != nil && runCtx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w (the demo's overall timeout of %s expired)", err, o.Timeout)
	}
	cancel()
	s.bg.Wait()
	if err == nil && len(s.res.Problems) > 0 {
		err = fmt.Errorf("previewd misbehaved:\n  - %s", strings.Join(s.res.Problems, "\n  - "))
	}
	if err != nil {
		s.failed = true
		s.showFailure(err)
	}
	s.stopAll()
	s.res.Total = time.Since(s.begin)
	if err == nil {
		s.printTimings()
		s.printf("\nDemo finished in %s. previewd's log: %s\n", round(s.res.Total), s.logPath)
	}
	return s.res, err
}

func (s *session) run(ctx context.Context) error {
	s.printf("previewd demo: a local control plane, PostgreSQL and a fake GitHub; no accounts, no network.\n\n")
	if err := s.prepare(); err != nil {
		return err
	}

	// Build previewd while the control plane starts.
	built := make(chan error, 1)
	if s.o.Previewd != "" {
		s.bin = s.o.Previewd
		built <- nil
	} else {
		s.bin = filepath.Join(s.work, "bin", "previewd")
		s.step("Building previewd (go build ./cmd/previewd) in the background")
		s.bg.Add(1)
		go func() { defer s.bg.Done(); built <- s.buildPreviewd(ctx) }()
	}

	if err := s.startCluster(ctx); err != nil {
		return err
	}
	if err := s.startDatabase(ctx); err != nil {
		return err
	}
	if err := s.startFake(); err != nil {
		return err
	}
	if err := s.writeConfig(); err != nil {
		return err
	}
	select {
	case err := <-built:
		if err != nil {
			return err
		}
	case <-ctx.Done():
		return fmt.Errorf("building previewd: %w", ctx.Err())
	}
	if err := s.startPreviewd(ctx); err != nil {
		return err
	}
	if err := s.waitInitialPreviews(ctx); err != nil {
		return err
	}
	if err := s.showPlan(ctx, "Nothing left to do, so `previewd plan` (read-only) should show no changes"); err != nil {
		return err
	}
	if err := s.changePRs(ctx); err != nil {
		return err
	}
	if err := s.showPlan(ctx, "And again after the push and the merge"); err != nil {
		return err
	}
	if err := s.report(ctx); err != nil {
		return err
	}
	return s.stopPreviewd()
}

// prepare finds the source tree and creates the work directory.
func (s *session) prepare() error {
	if s.o.Root == "" {
		root, err := FindRoot()
		if err != nil {
			return err
		}
		s.o.Root = root
	}
	if _, err := os.Stat(filepath.Join(s.o.Root, "charts", "preview-app", "Chart.yaml")); err != nil {
		return fmt.Errorf("no charts/preview-app in %s: %w", s.o.Root, err)
	}
	work, err := os.MkdirTemp("", "previewd-demo-")
	if err != nil {
		return fmt.Errorf("creating the work directory: %w", err)
	}
	s.work, s.res.WorkDir = work, work
	s.logPath = filepath.Join(work, "previewd.log")
	s.configPath = filepath.Join(work, "previewd.yaml")
	var tok [18]byte
	_, _ = rand.Read(tok[:])
	s.token = "ghp_demo" + hex.EncodeToString(tok[:])
	return nil
}

// FindRoot returns the previewd source tree at or above the working
// directory.
func FindRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modulePath(data) == ModulePath {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s at or above the working directory: run the demo from the previewd repository", ModulePath)
		}
		dir = parent
	}
}

func modulePath(gomod []byte) string {
	for _, line := range strings.Split(string(gomod), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

func (s *session) buildPreviewd(ctx context.Context) error {
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", s.bin, "./cmd/previewd")
	cmd.Dir = s.o.Root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("building previewd (go build ./cmd/previewd in %s): %w\n%s", s.o.Root, err, out)
	}
	s.step("Built previewd in %s", round(time.Since(start)))
	return nil
}

func (s *session) startCluster(ctx context.Context) error {
	if s.o.Kubeconfig != "" {
		s.step("Connecting to the running control plane of %s", s.o.Kubeconfig)
		c, err := testbed.Connect(s.o.Kubeconfig)
		if err != nil {
			return fmt.Errorf("connecting to the control plane: %w", err)
		}
		s.cluster = c
		s.onStop(func(ctx context.Context) { s.deleteOwnNamespaces(ctx) })
		return nil
	}
	s.step("Starting the control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (one simulated node)")
	c, err := testbed.Start(ctx, testbed.Options{Dir: filepath.Join(s.work, "cluster"), BinDir: s.o.KubeBinDir})
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	s.cluster, s.ownCluster = c, true
	s.res.ControlPlane = c.Ready
	s.onStop(func(context.Context) {
		_ = c.Stop()
		if !s.failed && !s.o.KeepWorkDir {
			_ = c.Remove()
		}
	})
	s.detail("ready in %s: %s (Kubernetes %s, kubeconfig %s)", round(c.Ready), c.RESTConfig.Host, testbed.KubeVersion, c.Kubeconfig)
	return nil
}

func (s *session) startDatabase(ctx context.Context) error {
	db, err := createDatabase(ctx, s.o.AdminDatabaseURL)
	if err != nil {
		return fmt.Errorf("PostgreSQL: %w", err)
	}
	s.db = db
	s.onStop(func(ctx context.Context) {
		if err := db.drop(ctx); err != nil {
			s.printf("warning: %v\n", err)
		}
	})
	s.step("PostgreSQL: fresh database %s on the %s (dropped at the end)", db.Name, db.Source)
	return nil
}

func (s *session) startFake() error {
	// The API lives under /api/v3/ as on GitHub Enterprise Server: previewd
	// warns about any other URL that is not api.github.com.
	s.fake = githubfake.New(githubfake.Options{GHEPrefix: true})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening for the GitHub fake: %w", err)
	}
	srv := &http.Server{Handler: s.fake, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	s.onStop(func(ctx context.Context) {
		s.fake.Close() // releases hanging requests
		_ = srv.Shutdown(ctx)
	})
	s.fakeURL = "http://" + ln.Addr().String() + "/api/v3/"
	s.fake.AddTokenAs(s.token, botLogin, githubfake.DefaultRateLimit)
	s.fake.AddRepo(s.repo)
	for _, pr := range samplePRs() {
		n := s.fake.OpenPR(s.repo, pr)
		pr.SHA = s.fake.HeadSHA(s.repo, n)
		s.prs = append(s.prs, &demoPR{PR: pr, Number: n, Namespace: namespaceName(s.repo, n)})
	}
	s.step("GitHub fake on %s: repository %s, a token for %s (5,000 requests/hour), open pull requests:", s.fakeURL, s.repo, botLogin)
	for _, p := range s.prs {
		s.detail("#%d  %-45s  branch %-24s head %s", p.Number, p.Title, p.Branch, p.SHA[:7])
	}
	return nil
}

func (s *session) writeConfig() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("finding a free port for previewd: %w", err)
	}
	s.listen = l.Addr().String()
	_ = l.Close()
	q := func(v string) string { // a JSON string is a YAML double-quoted scalar
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(v)
		return strings.TrimSpace(b.String())
	}
	chart := filepath.Join(s.o.Root, "charts", "preview-app")
	cfg := fmt.Sprintf(`# Written by the previewd demo (internal/demo). The token comes from $%[1]s.
listen: %[2]s
interval: %[3]s            # short for the demo; the default is 30s
instance: %[4]s
database_url: %[5]s
deploy_timeout: 2m
github:
  api_url: %[6]s   # the GitHub fake
  token_env: %[1]s
kubernetes:
  kubeconfig: %[7]s
repositories:
  - name: %[8]s
    chart: %[9]s
    image: %[10]s
    host: "{{ .Namespace }}.preview.local"
`, tokenEnv, q(s.listen), s.o.Interval, q(s.o.Instance), q(s.db.URL), q(s.fakeURL), q(s.cluster.Kubeconfig),
		q(s.repo), q(chart), q(DefaultImage))
	if err := os.WriteFile(s.configPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	// Check it here: a mistake reads better now than in previewd's log.
	if _, err := config.Load(s.configPath, s.getenv); err != nil {
		return fmt.Errorf("the demo wrote an invalid configuration: %w", err)
	}
	s.step("Wrote %s (poll interval %s: short for the demo; the default is 30s)", s.configPath, s.o.Interval)
	return nil
}

func (s *session) getenv(k string) string {
	if k == tokenEnv {
		return s.token
	}
	if k == config.EnvDatabaseURL {
		return "" // the demo's database, not the caller's
	}
	return os.Getenv(k)
}

// env is previewd's environment: the caller's, with the token and without
// a PREVIEWD_DATABASE_URL that would override the demo database.
func (s *session) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, config.EnvDatabaseURL+"=") || strings.HasPrefix(kv, tokenEnv+"=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, tokenEnv+"="+s.token)
}

// process is a running previewd.
type process struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	err     error // valid after exited is closed
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (s *session) startPreviewd(ctx context.Context) error {
	logFile, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "run", "--config", s.configPath, "--log-format", "text")
	cmd.Env = s.env()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = s.work
	// Its own process group, killed if the demo dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("starting %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.exited)
	}()
	s.proc = p
	s.onStop(func(context.Context) { s.killPreviewd() })
	s.step("Started `previewd run --config %s --log-format text` (pid %d), logging to %s", filepath.Base(s.configPath), cmd.Process.Pid, s.logPath)

	err = s.poll(ctx, "previewd's /readyz", 60*time.Second, func(ctx context.Context) (bool, string, error) {
		code, body, err := s.get(ctx, "/readyz")
		if err != nil {
			return false, err.Error(), nil
		}
		return code == http.StatusOK, strings.TrimSpace(body), nil
	})
	if err != nil {
		return err
	}
	s.detail("/readyz answers ok after %s (first reconcile cycle done; PostgreSQL and the API server answer)", round(time.Since(p.started)))
	return nil
}

func (s *session) get(ctx context.Context, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.listen+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(b), err
}

// poll calls check until it reports done, previewd exits, or timeout
// passes; why is the last reason it was not done, for the error.
func (s *session) poll(ctx context.Context, what string, timeout time.Duration, check func(context.Context) (done bool, why string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	why := "not checked yet"
	for {
		done, w, err := check(ctx)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		if w != "" {
			why = w
		}
		if s.proc != nil && !s.proc.running() {
			return fmt.Errorf("waiting for %s: previewd exited (%v); last state: %s", what, s.proc.err, why)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w; last state: %s", what, ctx.Err(), why)
		case <-t.C:
		}
	}
}

// waitInitialPreviews waits until every sample PR has a Ready preview.
func (s *session) waitInitialPreviews(ctx context.Context) error {
	s.step("Waiting for the %d previews to be Ready (Helm release deployed, Deployment ready, PR comment says so)", len(s.prs))
	pending := map[int]*demoPR{}
	for _, p := range s.prs {
		pending[p.Number] = p
	}
	return s.poll(ctx, "the previews to be Ready", 150*time.Second, func(ctx context.Context) (bool, string, error) {
		var whys []string
		for _, p := range s.prs {
			if pending[p.Number] == nil {
				continue
			}
			ok, why, err := s.previewReady(ctx, p, p.SHA)
			if err != nil {
				return false, "", err
			}
			if ok {
				d := time.Since(s.proc.started)
				s.res.Ready[p.Number] = d
				delete(pending, p.Number)
				s.detail("#%d Ready %s after previewd started: %s, image tag %s", p.Number, round(d), p.Namespace, p.SHA[:7])
				continue
			}
			whys = append(whys, fmt.Sprintf("#%d: %s", p.Number, why))
		}
		return len(pending) == 0, strings.Join(whys, "; "), nil
	})
}

// previewReady checks the cluster and the PR comment for a Ready preview
// of sha. A comment saying the preview failed is an error.
func (s *session) previewReady(ctx context.Context, p *demoPR, sha string) (bool, string, error) {
	pv, err := s.observe(ctx, p.Namespace)
	if err != nil {
		return false, "", err
	}
	switch {
	case !pv.Exists:
		return false, "namespace " + p.Namespace + " not created yet", nil
	case pv.Terminating:
		return false, "namespace " + p.Namespace + " is terminating", nil
	case pv.Tag == "":
		return false, "no Deployment yet", nil
	case pv.Tag != sha:
		return false, fmt.Sprintf("Deployment runs tag %s, not %s yet", short(pv.Tag), short(sha)), nil
	case pv.Replicas == 0 || pv.Ready != pv.Replicas || pv.Updated != pv.Replicas:
		return false, fmt.Sprintf("Deployment %d/%d ready", pv.Ready, pv.Replicas), nil
	case pv.ReleaseStatus != "deployed":
		return false, "Helm release " + orNone(pv.ReleaseStatus), nil
	}
	bot := s.botComments(p.Number)
	if len(bot) == 0 {
		return false, "no PR comment yet", nil
	}
	body := bot[len(bot)-1].Body
	if strings.Contains(body, "Preview failed") {
		return false, "", fmt.Errorf("previewd reports the preview of #%d failed:\n%s", p.Number, indent(body, "    "))
	}
	if !strings.Contains(body, "Preview ready") || !strings.Contains(body, "`"+short(sha)+"`") {
		return false, "PR comment does not say Ready for " + short(sha) + " yet", nil
	}
	return true, "", nil
}

func (s *session) botComments(number int) []githubfake.Comment {
	var out []githubfake.Comment
	for _, c := range s.fake.Comments(s.repo, number) {
		if c.Login == botLogin {
			out = append(out, c)
		}
	}
	return out
}

// showPlan runs `previewd plan` and expects "No changes" (exit 0). Right
// after a change previewd may still be updating a comment, so a plan with
// changes is retried for a few intervals before it counts as a problem.
func (s *session) showPlan(ctx context.Context, title string) error {
	s.step("%s:", title)
	s.detail("$ previewd plan --config %s --log-format text", filepath.Base(s.configPath))
	var stdout, stderr bytes.Buffer
	var code int
	start := time.Now()
	for try := 0; ; try++ {
		stdout.Reset()
		stderr.Reset()
		cmd := exec.CommandContext(ctx, s.bin, "plan", "--config", s.configPath, "--log-format", "text")
		cmd.Env = s.env()
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Dir = s.work
		err := cmd.Run()
		code = 0
		if err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				return fmt.Errorf("running previewd plan: %w", err)
			}
			code = ee.ExitCode()
		}
		if code != 2 || try >= 4 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.o.Interval + time.Second):
		}
	}
	for _, l := range strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n") {
		s.detail("  %s", l)
	}
	if e := strings.TrimSpace(stderr.String()); e != "" {
		s.detail("  (stderr) %s", strings.ReplaceAll(e, "\n", "\n      "))
	}
	s.detail("exit status %d after %s", code, round(time.Since(start)))
	switch code {
	case 0:
		return nil
	case 2:
		s.problem("`previewd plan` still lists changes %s after the previews settled (exit 2):\n%s", round(time.Since(start)), indent(stdout.String(), "      "))
		return nil
	default:
		return fmt.Errorf("previewd plan failed (exit %d):\n%s%s", code, stdout.String(), stderr.String())
	}
}

// changePRs pushes a commit to PR 1 and merges PR 2, then waits for the
// redeploy and the deletion.
func (s *session) changePRs(ctx context.Context) error {
	p1, p2 := s.prs[0], s.prs[1]
	var b [20]byte
	_, _ = rand.Read(b[:])
	newSHA := hex.EncodeToString(b[:])
	if err := s.fake.Push(s.repo, p1.Number, newSHA); err != nil {
		return err
	}
	pushed := time.Now()
	s.step("Pushed %s to #%d (%s)", newSHA[:7], p1.Number, p1.Branch)
	if err := s.fake.MergePR(s.repo, p2.Number); err != nil {
		return err
	}
	merged := time.Now()
	s.step("Merged #%d (%s)", p2.Number, p2.Title)
	p1.SHA = newSHA

	redeployed, deleted := false, false
	err := s.poll(ctx, "the redeploy of #1 and the deletion of #2", 120*time.Second, func(ctx context.Context) (bool, string, error) {
		var whys []string
		if !redeployed {
			ok, why, err := s.previewReady(ctx, p1, newSHA)
			if err != nil {
				return false, "", err
			}
			if ok {
				redeployed = true
				s.res.Redeploy = time.Since(pushed)
				s.detail("#%d redeployed and Ready %s after the push: image tag %s", p1.Number, round(s.res.Redeploy), newSHA[:7])
			} else {
				whys = append(whys, fmt.Sprintf("#%d: %s", p1.Number, why))
			}
		}
		if !deleted {
			pv, err := s.observe(ctx, p2.Namespace)
			if err != nil {
				return false, "", err
			}
			bot := s.botComments(p2.Number)
			said := len(bot) > 0 && strings.Contains(bot[len(bot)-1].Body, "Preview removed")
			switch {
			case pv.Exists && pv.Terminating:
				whys = append(whys, fmt.Sprintf("#%d: namespace %s terminating", p2.Number, p2.Namespace))
			case pv.Exists:
				whys = append(whys, fmt.Sprintf("#%d: namespace %s still there", p2.Number, p2.Namespace))
			case !said:
				whys = append(whys, fmt.Sprintf("#%d: namespace gone, PR comment does not say so yet", p2.Number))
			default:
				deleted = true
				s.res.Deletion = time.Since(merged)
				s.detail("#%d namespace %s deleted %s after the merge; the comment says so", p2.Number, p2.Namespace, round(s.res.Deletion))
			}
		}
		return redeployed && deleted, strings.Join(whys, "; "), nil
	})
	return err
}

// stopPreviewd sends SIGTERM and expects a clean exit.
func (s *session) stopPreviewd() error {
	p := s.proc
	if p == nil || !p.running() {
		return fmt.Errorf("previewd exited before the end of the demo: %v", p.err)
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("previewd did not stop within 30s of SIGTERM; killed it")
	}
	if p.err != nil {
		return fmt.Errorf("previewd exited with %v after SIGTERM", p.err)
	}
	s.step("Stopped previewd with SIGTERM: exit status 0 after %s", round(time.Since(start)))
	// Secrets never reach logs or comments.
	logData, _ := os.ReadFile(s.logPath)
	if bytes.Contains(logData, []byte(s.token)) {
		s.problem("the GitHub token appears in previewd's log %s", s.logPath)
	}
	for _, pr := range s.prs {
		for _, c := range s.fake.Comments(s.repo, pr.Number) {
			if strings.Contains(c.Body, s.token) {
				s.problem("the GitHub token appears in a comment on #%d", pr.Number)
			}
		}
	}
	if len(s.res.Problems) == 0 {
		s.detail("the token appears nowhere in previewd's log or the PR comments")
	}
	return nil
}

// killPreviewd is the clean-up path: SIGTERM, then SIGKILL to the group.
func (s *session) killPreviewd() {
	p := s.proc
	if p == nil || !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func (s *session) onStop(f func(context.Context)) {
	s.cleanMu.Lock()
	defer s.cleanMu.Unlock()
	s.cleanup = append(s.cleanup, f)
}

// stopAll runs the clean-ups, newest first, and removes the work
// directory's bulky parts.
func (s *session) stopAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s.cleanMu.Lock()
	fns := s.cleanup
	s.cleanup = nil
	s.cleanMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i](ctx)
	}
	if s.work == "" {
		return
	}
	if !s.o.KeepWorkDir {
		_ = os.RemoveAll(filepath.Join(s.work, "bin"))
	}
	if s.failed || s.o.KeepWorkDir {
		what := "previewd.yaml, previewd.log"
		if s.ownCluster {
			what += ", cluster/ with the control plane's logs"
		}
		s.printf("Kept %s (%s)\n", s.work, what)
	}
}

func (s *session) showFailure(err error) {
	s.printf("\nDEMO FAILED after %s: %v\n", round(time.Since(s.begin)), err)
	if s.logPath != "" {
		if data, rerr := os.ReadFile(s.logPath); rerr == nil && len(data) > 0 {
			s.printf("\n--- last lines of previewd's log (%s) ---\n%s\n", s.logPath, tailLines(string(data), 60))
		}
	}
	if s.fake != nil {
		for _, p := range s.prs {
			if bot := s.botComments(p.Number); len(bot) > 0 {
				s.printf("\n--- comment on #%d ---\n%s\n", p.Number, strings.Join(githubView(bot[len(bot)-1].Body), "\n"))
			}
		}
	}
	if s.cluster != nil && s.proc != nil {
		s.printf("\n--- the previews in the cluster ---\n")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, p := range s.prs {
			s.printf("%s\n", s.describe(ctx, p.Namespace))
		}
	}
	if s.ownCluster && s.cluster != nil {
		s.printf("\nControl-plane logs: %s/*.log\n", s.cluster.Dir)
	}
}

func (s *session) printTimings() {
	s.section("Timings")
	if s.res.ControlPlane > 0 {
		s.printf("  control plane started              %s\n", round(s.res.ControlPlane))
	}
	var ready []string
	for _, p := range s.prs {
		ready = append(ready, fmt.Sprintf("#%d %s", p.Number, round(s.res.Ready[p.Number])))
	}
	s.printf("  previewd start → preview Ready     %s\n", strings.Join(ready, ", "))
	s.printf("  push to #%d → new commit Ready      %s\n", s.prs[0].Number, round(s.res.Redeploy))
	s.printf("  merge of #%d → namespace gone       %s\n", s.prs[1].Number, round(s.res.Deletion))
	s.printf("  whole demo                         %s\n", round(s.res.Total))
}

func (s *session) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.res.Problems = append(s.res.Problems, msg)
	s.printf("  PROBLEM: %s\n", msg)
}

func (s *session) printf(format string, args ...any) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	fmt.Fprintf(s.out, format, args...)
}

// step prints a line stamped with the time since the demo began.
func (s *session) step(format string, args ...any) {
	s.printf("[%6.1fs] %s\n", time.Since(s.begin).Seconds(), fmt.Sprintf(format, args...))
}

// detail prints an indented line under a step.
func (s *session) detail(format string, args ...any) {
	s.printf("          %s\n", fmt.Sprintf(format, args...))
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}

func orNone(s string) string {
	if s == "" {
		return "not installed yet"
	}
	return s
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
