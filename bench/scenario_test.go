package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/previewd/previewd/github"
	"github.com/previewd/previewd/github/githubfake"
	"github.com/previewd/previewd/internal/config"
	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/pgtest"
	"github.com/previewd/previewd/internal/harness/promtext"
	"github.com/previewd/previewd/internal/harness/testbed"
	"github.com/previewd/previewd/internal/wire"
	"github.com/previewd/previewd/kube"
	"github.com/previewd/previewd/reconcile/model"
	"github.com/previewd/previewd/state"
)

const resultsFile = "results.json"

func TestMain(m *testing.M) {
	if os.Getenv("PREVIEWD_BENCH") == "1" {
		// A finer heap profile than the default 512 KiB sampling.
		runtime.MemProfileRate = 16 << 10
	}
	kube.UseFieldManager()
	code := m.Run()
	if binPath != "" && os.Getenv("PREVIEWD_BENCH_BINARY") == "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	testbed.StopShared(code)
	if err := pgtest.Shutdown(); err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
	}
	os.Exit(code)
}

func gate(t *testing.T) {
	t.Helper()
	if os.Getenv("PREVIEWD_BENCH") != "1" {
		t.Skip("scenario benchmark: set PREVIEWD_BENCH=1 to run")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// world is one scenario's fake GitHub, database and configuration on the
// shared control plane.
type world struct {
	t        *testing.T
	gh       *githubfake.Server
	kube     *testbed.Cluster
	id       string
	token    string
	dbURL    string
	cfgPath  string
	repos    []string
	perRepo  int
	log      *slog.Logger
	instance string
	parallel int
}

// openPR opens PR number n (0-based, per repository) of repo in the fake.
func (w *world) openPR(repo string, n int) int {
	return w.gh.OpenPR(repo, githubfake.PR{Title: fmt.Sprintf("change %d", n), Branch: fmt.Sprintf("feature-%d", n),
		SHA: e2e.SHA(fmt.Sprint(repo, n, "v1")), Author: "octocat"})
}

// writeConfig writes the daemon's configuration with the given poll
// interval: every repository with the preview-app chart.
func (w *world) writeConfig(interval string) {
	w.t.Helper()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `interval: %s
resync_interval: 1h
listen: "127.0.0.1:0"
database_url: %q
instance: %s
github:
  api_url: %q
  token_env: BENCH_GH_TOKEN
kubernetes:
  kubeconfig: %q
deploy_timeout: 180s
max_parallel_deploys: %d
repositories:
`, interval, w.dbURL, w.instance, w.gh.APIURL(), w.kube.Kubeconfig, w.parallel)
	chart := filepath.Join(e2e.RepoRoot(), "charts", "preview-app")
	for _, repo := range w.repos {
		fmt.Fprintf(&cfg, "  - name: %s\n    chart: %q\n    image: registry.example.com/bench/app\n    host: \"{{ .Namespace }}.preview.test\"\n", repo, chart)
	}
	if err := os.WriteFile(w.cfgPath, []byte(cfg.String()), 0o600); err != nil {
		w.t.Fatal(err)
	}
}

func newWorld(t *testing.T, repos, perRepo, parallel int) *world {
	t.Helper()
	c := testbed.Kube(t)
	w := &world{t: t, kube: c, perRepo: perRepo}
	w.id = e2e.SHA(fmt.Sprint(t.Name(), time.Now().UnixNano()))[:6]
	w.instance = "bench-" + w.id
	w.token = "tok-" + w.id
	// No primary limit in the way of the initial deploys: the scenario
	// measures the charged requests itself.
	w.gh = githubfake.NewTestServer(t, githubfake.Options{RateLimit: 10_000_000, JournalSize: -1})
	w.gh.AddTokenAs(w.token, e2e.BotLogin, 10_000_000)
	w.dbURL = pgtest.URL(t)
	w.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for r := 0; r < repos; r++ {
		repo := fmt.Sprintf("bench/s%s-%03d", w.id, r)
		w.repos = append(w.repos, repo)
		w.gh.AddRepo(repo)
		for n := 0; n < perRepo; n++ {
			w.openPR(repo, n)
		}
	}
	w.parallel = parallel
	w.cfgPath = filepath.Join(t.TempDir(), "previewd.yaml")
	w.writeConfig("30s")
	addNodes(t, c, repos*perRepo)
	if os.Getenv(testbed.EnvKubeconfig) != "" {
		// A long-lived control plane: remove this run's namespaces (without
		// waiting). A control plane this binary started is stopped instead.
		t.Cleanup(func() {
			ctx := context.Background()
			nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: kube.LabelInstance + "=" + w.instance})
			if err != nil {
				return
			}
			for _, ns := range nss.Items {
				_ = c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
			}
		})
	}
	return w
}

// addNodes adds simulated kwok nodes so that previews pods fit: the test
// bed's one node takes 110 pods, so more previews than that stay Pending.
func addNodes(t *testing.T, c *testbed.Cluster, pods int) {
	t.Helper()
	qty := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods: resource.MustParse("110")}
	ctx := context.Background()
	for i := 0; i < pods/100+1; i++ {
		name := fmt.Sprintf("bench-kwok-%d", i)
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
			Status: corev1.NodeStatus{Capacity: qty, Allocatable: qty}}
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("adding node %s: %v", name, err)
		}
	}
}

func (w *world) daemon() *wire.Daemon {
	w.t.Helper()
	cfg, err := config.Load(w.cfgPath, func(k string) string {
		if k == "BENCH_GH_TOKEN" {
			return w.token
		}
		return ""
	})
	if err != nil {
		w.t.Fatal(err)
	}
	zero := time.Duration(0)
	d, err := wire.Build(context.Background(), cfg, wire.Options{Log: w.log,
		Backoff: func(int) time.Duration { return 500 * time.Millisecond }, MutationSpacing: &zero})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(d.Close)
	return d
}

// cycleStats is one cycle as measured from outside the daemon.
type cycleStats struct {
	Cycle       int     `json:"cycle"`
	Actions     int     `json:"actions"`
	Requests    int     `json:"requests"`
	Charged     int     `json:"charged"`
	NotModified int     `json:"not_modified"`
	Mutations   int     `json:"mutations"`
	WallMS      float64 `json:"wall_ms"`
	CPUMS       float64 `json:"cpu_ms"`
	Err         string  `json:"error,omitempty"`
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cycle runs one reconcile cycle and waits for its actions.
func (w *world) cycle(ctx context.Context, d *wire.Daemon, i int) cycleStats {
	w.gh.ResetCounters()
	cpu0, t0 := cpuTime(), time.Now()
	res, err := d.Loop.Cycle(ctx)
	err = errors.Join(err, d.Executor.Wait())
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	c := w.gh.Counters()
	s := cycleStats{Cycle: i, Actions: len(res.Actions), Requests: c.Requests, Charged: c.Charged, NotModified: c.NotModified,
		Mutations: c.Mutations, WallMS: ms(wall), CPUMS: ms(cpu)}
	if err != nil {
		s.Err = err.Error()
	}
	return s
}

// converge runs cycles until one plans nothing; it returns their sum.
func (w *world) converge(ctx context.Context, d *wire.Daemon, max int) (cycleStats, []cycleStats) {
	var sum cycleStats
	var all []cycleStats
	for i := 1; i <= max; i++ {
		s := w.cycle(ctx, d, i)
		all = append(all, s)
		sum.Cycle = i
		sum.Actions += s.Actions
		sum.Requests += s.Requests
		sum.Charged += s.Charged
		sum.NotModified += s.NotModified
		sum.Mutations += s.Mutations
		sum.WallMS += s.WallMS
		sum.CPUMS += s.CPUMS
		if s.Err != "" {
			sum.Err = s.Err
		}
		if s.Actions == 0 && s.Err == "" {
			break
		}
	}
	return sum, all
}

func ms(d time.Duration) float64 { return math.Round(float64(d.Microseconds())/10) / 100 }

func countStatus(t *testing.T, d *wire.Daemon) map[model.Status]int {
	ps, err := d.Store.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[model.Status]int{}
	for _, p := range ps {
		out[p.Status]++
	}
	return out
}

type idleResult struct {
	Scale           string               `json:"scale"`
	Headline        map[string]Figure    `json:"headline"`
	Repos           int                  `json:"repos"`
	PRsPerRepo      int                  `json:"prs_per_repo"`
	OpenPRs         int                  `json:"open_prs"`
	MaxParallel     int                  `json:"max_parallel_deploys"`
	GOMAXPROCS      int                  `json:"gomaxprocs"`
	DeploySeconds   float64              `json:"initial_deploy_seconds"`
	DeployCycles    []cycleStats         `json:"initial_deploy_cycles"`
	Statuses        map[model.Status]int `json:"statuses_after_deploy"`
	Idle            []cycleStats         `json:"idle_cycles"`
	IdleChargedMax  int                  `json:"idle_charged_max"`
	IdleRequestsAvg float64              `json:"idle_requests_avg"`
	IdleWallMSP50   float64              `json:"idle_wall_ms_p50"`
	IdleWallMSMax   float64              `json:"idle_wall_ms_max"`
	IdleCPUMSAvg    float64              `json:"idle_cpu_ms_avg"`
	// Per idle cycle, by process (bench.test holds the daemon under test,
	// the GitHub fake and the harness).
	IdleCPUMSByProcess map[string]float64 `json:"idle_cpu_ms_per_cycle_by_process"`
	ObserveFull        observeCost        `json:"observe_cluster_every_release"`
	ObserveIndexed     observeCost        `json:"observe_cluster_changed_releases_only"`
	HeapInuseMiB       float64            `json:"heap_inuse_mib_after_idle"`
	HeapAllocMiB       float64            `json:"heap_alloc_mib_after_idle"`
	HeapObjects        uint64             `json:"heap_objects_after_idle"`
	HeapProfile        string             `json:"heap_profile,omitempty"`
	CPUProfile         string             `json:"idle_cpu_profile,omitempty"`
	Restart            cycleStats         `json:"restart_first_cycle"`
	Resync             cycleStats         `json:"resync_cycle"`
	Push               cycleStats         `json:"one_push_until_converged"`
	PushCycles         []cycleStats       `json:"one_push_cycles"`
	Budget             budgetResult       `json:"hourly_budget"`
}

type budgetResult struct {
	Limit               int     `json:"limit_per_hour"`
	Repos               int     `json:"repos"`
	OpenPRs             int     `json:"open_prs"`
	IdleChargedPerCycle float64 `json:"idle_charged_per_cycle_at_100_repos"`
	ResyncPerHour       float64 `json:"resync_charged_per_hour"`
	PushCost            float64 `json:"charged_per_push"`
	PushesPerHour       float64 `json:"pushes_per_hour"`
	IdleMinIntervalS    float64 `json:"idle_min_interval_seconds"`
	PushMinIntervalS    float64 `json:"with_pushes_min_interval_seconds"`
	CycleWallS          float64 `json:"idle_cycle_wall_seconds_at_100_repos"`
	RequestsPerCycle    float64 `json:"idle_requests_per_cycle_at_100_repos"`
	SecondaryMinS       float64 `json:"secondary_limit_min_interval_seconds"`
	Note                string  `json:"note"`
}

// TestScale deploys repos × PRs previews through a daemon built by
// wire.Build in this process, then measures idle cycles, a restart, a full
// resync and one push, and derives the hourly budget (scenarios 1 and 2);
// then runs the real binary on the same world for its memory in steady
// state (scenario 6) and the detection latency of pushes (scenario 3).
func TestScale(t *testing.T) {
	gate(t)
	repos := envInt("PREVIEWD_BENCH_REPOS", 20)
	perRepo := envInt("PREVIEWD_BENCH_PRS", 5)
	idleN := envInt("PREVIEWD_BENCH_IDLE_CYCLES", 20)
	parallel := envInt("PREVIEWD_BENCH_PARALLEL", 8)
	w := newWorld(t, repos, perRepo, parallel)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Minute)
	defer cancel()
	r := idleResult{Repos: repos, PRsPerRepo: perRepo, OpenPRs: repos * perRepo, MaxParallel: parallel, GOMAXPROCS: runtime.GOMAXPROCS(0)}

	d := w.daemon()
	t0 := time.Now()
	sum, all := w.converge(ctx, d, 6)
	r.DeploySeconds = math.Round(time.Since(t0).Seconds()*10) / 10
	r.DeployCycles = all
	r.Statuses = countStatus(t, d)
	t.Logf("initial deploy of %d PRs: %.1f s, %d cycles, %d requests (%d charged), statuses %v",
		r.OpenPRs, r.DeploySeconds, len(all), sum.Requests, sum.Charged, r.Statuses)
	if r.Statuses[model.StatusReady] != r.OpenPRs {
		t.Errorf("after the initial deploy: %v, want %d ready", r.Statuses, r.OpenPRs)
	}

	// Idle cycles, under a CPU profile.
	cpuProf := os.Getenv("PREVIEWD_BENCH_CPUPROFILE")
	if cpuProf == "" {
		cpuProf = filepath.Join(os.TempDir(), "previewd-bench-cpu.pprof")
	}
	if f, err := os.Create(cpuProf); err == nil {
		if err := pprof.StartCPUProfile(f); err == nil {
			r.CPUProfile = cpuProf
			defer f.Close()
		}
	}
	var reqs, cpu float64
	var walls []float64
	procs0 := cpuByProcess()
	for i := 1; i <= idleN; i++ {
		s := w.cycle(ctx, d, i)
		r.Idle = append(r.Idle, s)
		r.IdleChargedMax = max(r.IdleChargedMax, s.Charged)
		reqs += float64(s.Requests)
		cpu += s.CPUMS
		walls = append(walls, s.WallMS)
		t.Logf("idle cycle %2d: actions %d, requests %d, charged %d, 304 %d, wall %.1f ms, cpu %.1f ms %s",
			i, s.Actions, s.Requests, s.Charged, s.NotModified, s.WallMS, s.CPUMS, s.Err)
	}
	if r.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	r.IdleCPUMSByProcess = map[string]float64{}
	for k, v := range cpuByProcess() {
		if d := v - procs0[k]; d > 0 {
			r.IdleCPUMSByProcess[k] = round1(float64(d.Milliseconds()) / float64(idleN))
		}
	}
	t.Logf("CPU per idle cycle by process (ms): %v", r.IdleCPUMSByProcess)
	r.IdleRequestsAvg = reqs / float64(idleN)
	r.IdleCPUMSAvg = math.Round(cpu/float64(idleN)*100) / 100
	r.IdleWallMSP50, r.IdleWallMSMax = percentile(walls, 0.5), percentile(walls, 1)

	// Heap after the idle cycles (this process also holds the GitHub fake's
	// state and the test harness).
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	r.HeapInuseMiB = math.Round(float64(m.HeapInuse)/(1<<20)*100) / 100
	r.HeapAllocMiB = math.Round(float64(m.HeapAlloc)/(1<<20)*100) / 100
	r.HeapObjects = m.HeapObjects
	prof := os.Getenv("PREVIEWD_BENCH_HEAPPROFILE")
	if prof == "" {
		prof = filepath.Join(os.TempDir(), "previewd-bench-heap.pprof")
	}
	if f, err := os.Create(prof); err == nil {
		if err := pprof.Lookup("heap").WriteTo(f, 0); err == nil {
			r.HeapProfile = prof
		}
		_ = f.Close()
	}

	// The improvement: observing the cluster reading every release (before)
	// and only the changed ones (now).
	r.ObserveFull, r.ObserveIndexed = compareObserve(t, ctx, w, w.instance, 5)
	fmt.Printf("OBSERVE CLUSTER (%d previews): every release read %.0f ms wall, %.0f ms CPU, %.0f API requests; changed releases only %.0f ms wall, %.0f ms CPU, %.0f API requests\n",
		r.OpenPRs, r.ObserveFull.WallMS, r.ObserveFull.CPUMS, r.ObserveFull.APIRequests, r.ObserveIndexed.WallMS, r.ObserveIndexed.CPUMS, r.ObserveIndexed.APIRequests)

	// Full resync (what the hourly cron job runs): lists read unconditionally.
	r.Resync = w.cycle(github.Unconditional(ctx), d, 1)
	t.Logf("resync cycle: requests %d, charged %d, actions %d", r.Resync.Requests, r.Resync.Charged, r.Resync.Actions)

	// Restart: a new daemon on the same database.
	d.Close()
	d2 := w.daemon()
	r.Restart = w.cycle(ctx, d2, 1)
	t.Logf("restart, first cycle: actions %d, requests %d, charged %d, wall %.1f ms", r.Restart.Actions, r.Restart.Requests, r.Restart.Charged, r.Restart.WallMS)

	// One push: its cost until the daemon is idle again.
	if err := w.gh.Push(w.repos[0], 1, e2e.SHA("pushed")); err != nil {
		t.Fatal(err)
	}
	r.Push, r.PushCycles = w.converge(ctx, d2, 5)
	t.Logf("one push: %d cycles, requests %d, charged %d (mutations %d), wall %.1f ms", len(r.PushCycles), r.Push.Requests, r.Push.Charged, r.Push.Mutations, r.Push.WallMS)

	r.Budget = budget(r)
	r.Scale = fmt.Sprintf("%d repositories × %d PRs", repos, perRepo)
	r.Headline = map[string]Figure{
		"idle.charged_per_cycle_max":       {float64(r.IdleChargedMax), "requests", lower},
		"idle.requests_per_cycle_avg":      {r.IdleRequestsAvg, "requests", lower},
		"idle.cycle_wall_ms_p50":           {r.IdleWallMSP50, "ms", lower},
		"idle.cycle_cpu_ms_avg_in_process": {r.IdleCPUMSAvg, "ms", lower},
		"idle.restart_first_cycle_charged": {float64(r.Restart.Charged), "requests", lower},
		"idle.initial_deploy_seconds":      {r.DeploySeconds, "s", lower},
		"idle.push_charged":                {float64(r.Push.Charged), "requests", lower},
		"idle.observe_cluster_cpu_ms":      {r.ObserveIndexed.CPUMS, "ms", lower},
	}
	if err := WriteResult(resultsFile, "idle_cost", r); err != nil {
		t.Error(err)
	}
	d2.Close()
	b := r.Budget
	fmt.Printf("\nHEAP: in use %.1f MiB (alloc %.1f MiB, %d objects) after %d idle cycles with %d previews; profile %s\n",
		r.HeapInuseMiB, r.HeapAllocMiB, r.HeapObjects, idleN, r.OpenPRs, r.HeapProfile)
	fmt.Printf("HOURLY BUDGET (100 repos, %d open PRs, 5,000 charged/h): idle %.2f charged/cycle → min interval %s; "+
		"with 10%% of PRs pushed per hour (%.0f pushes × %.1f charged + resync %.0f/h) → min interval %s; "+
		"other bounds: idle cycle wall %.2f s, secondary limit (900 GET/min, if 304s count) %.1f s\n",
		b.OpenPRs, b.IdleChargedPerCycle, fmtInterval(b.IdleMinIntervalS), b.PushesPerHour, b.PushCost, b.ResyncPerHour,
		fmtInterval(b.PushMinIntervalS), b.CycleWallS, b.SecondaryMinS)
	fmt.Printf("IDLE COST (%d repos × %d PRs): charged per idle cycle max %d (goal 0), requests avg %.1f, wall p50 %.1f ms, cpu avg %.1f ms; after restart: charged %d (goal 0)\n",
		repos, perRepo, r.IdleChargedMax, r.IdleRequestsAvg, r.IdleWallMSP50, r.IdleCPUMSAvg, r.Restart.Charged)

	// The real binary on the same world: memory at rest, then pushes.
	interval := 30 * time.Second
	if v, err := time.ParseDuration(os.Getenv("PREVIEWD_BENCH_INTERVAL")); err == nil && v >= time.Second {
		interval = v
	}
	w.writeConfig(interval.String())
	p := w.startDaemon(ctx)
	mem := steadyMemory(t, ctx, p, r.Scale, envInt("PREVIEWD_BENCH_MEMORY_CYCLES", 3))
	if err := WriteResult(resultsFile, "memory", mem); err != nil {
		t.Error(err)
	}
	fmt.Printf("MEMORY (%s, real binary, %d idle cycles at %s): RSS avg %.1f MiB, max %.1f MiB, peak (VmHWM) %.1f MiB; Go heap in use %.1f MiB; CPU %.0f ms per idle cycle (daemon alone), cycle %.0f ms\n",
		mem.Scale, mem.Cycles, interval, mem.Usage.RSSAvgMiB, mem.Usage.RSSMaxMiB, mem.Usage.PeakRSSMiB, mem.HeapInuseMiB, mem.CPUMSPerCycle, mem.CycleMSAvg)
	lat := detectionLatency(t, ctx, w, p, interval, envInt("PREVIEWD_BENCH_PUSHES", 24))
	lat.Scale = r.Scale
	if err := WriteResult(resultsFile, "detection_latency", lat); err != nil {
		t.Error(err)
	}
	fmt.Printf("DETECTION LATENCY (%d pushes, interval %s, %s): seen p50 %.1f s p95 %.1f s; deploy start p50 %.1f s p95 %.1f s; Ready p50 %.1f s p95 %.1f s (max %.1f s)\n",
		lat.Pushes, interval, lat.Scale, lat.SeenP50S, lat.SeenP95S, lat.StartP50S, lat.StartP95S, lat.ReadyP50S, lat.ReadyP95S, lat.ReadyMaxS)
}

type memoryResult struct {
	Scale         string            `json:"scale"`
	Cycles        int               `json:"idle_cycles"`
	Usage         usage             `json:"daemon"`
	CPUMSPerCycle float64           `json:"cpu_ms_per_idle_cycle"`
	CycleMSAvg    float64           `json:"reconcile_ms_avg"`
	HeapInuseMiB  float64           `json:"go_heap_inuse_mib"`
	Goroutines    float64           `json:"goroutines"`
	HeapProfile   string            `json:"heap_profile"`
	HeapTop       []string          `json:"heap_top"`
	Headline      map[string]Figure `json:"headline"`
}

// steadyMemory samples the running daemon over n idle cycles (after the
// first, which startDaemon waited for) and takes its heap profile.
func steadyMemory(t *testing.T, ctx context.Context, p *daemonProc, scale string, n int) memoryResult {
	t.Helper()
	res := memoryResult{Scale: scale, Cycles: n}
	cycles := func(m promtext.Metrics) float64 { return m.Sum("previewd_reconcile_cycles_total") }
	m0 := p.metrics()
	smp := p.startSampler(time.Second)
	// Scrapes are part of the daemon's CPU: one every 5 s.
	for cycles(p.metrics()) < cycles(m0)+float64(n) {
		select {
		case <-p.done:
			t.Fatalf("previewd exited:\n%s", tail(p.logs.String(), 30))
		case <-ctx.Done():
			t.Fatalf("daemon ran %v of %d cycles", cycles(p.metrics())-cycles(m0), n)
		case <-time.After(5 * time.Second):
		}
	}
	m1 := p.metrics()
	res.Usage = summarize(smp.stop())
	done := cycles(m1) - cycles(m0)
	res.CPUMSPerCycle = round1(res.Usage.CPUSeconds * 1000 / done)
	dur := m1.Sum("previewd_reconcile_duration_seconds_sum") - m0.Sum("previewd_reconcile_duration_seconds_sum")
	res.CycleMSAvg = round1(dur * 1000 / done)
	res.HeapInuseMiB = round2(m1.Sum("go_memstats_heap_inuse_bytes") / (1 << 20))
	res.Goroutines = m1.Sum("go_goroutines")
	if v := m1.Sum("previewd_reconcile_cycles_total", "result", "error") - m0.Sum("previewd_reconcile_cycles_total", "result", "error"); v > 0 {
		t.Errorf("%v idle cycles failed:\n%s", v, tail(p.logs.String(), 20))
	}
	res.HeapProfile = filepath.Join(os.TempDir(), "previewd-bench-daemon-heap.pprof")
	top, err := p.heapProfile(res.HeapProfile, 12)
	if err != nil {
		t.Error(err)
	}
	res.HeapTop = top
	res.Headline = map[string]Figure{
		"memory.rss_avg_mib":           {res.Usage.RSSAvgMiB, "MiB", lower},
		"memory.peak_rss_mib":          {res.Usage.PeakRSSMiB, "MiB", lower},
		"memory.go_heap_inuse_mib":     {res.HeapInuseMiB, "MiB", lower},
		"memory.cpu_ms_per_idle_cycle": {res.CPUMSPerCycle, "ms", lower},
	}
	return res
}

type latencyResult struct {
	Scale     string            `json:"scale"`
	Pushes    int               `json:"pushes"`
	IntervalS float64           `json:"interval_seconds"`
	SeenS     []float64         `json:"seen_seconds"`
	StartS    []float64         `json:"deploy_start_seconds"`
	ReadyS    []float64         `json:"ready_seconds"`
	SeenP50S  float64           `json:"seen_p50_seconds"`
	SeenP95S  float64           `json:"seen_p95_seconds"`
	StartP50S float64           `json:"deploy_start_p50_seconds"`
	StartP95S float64           `json:"deploy_start_p95_seconds"`
	ReadyP50S float64           `json:"ready_p50_seconds"`
	ReadyP95S float64           `json:"ready_p95_seconds"`
	ReadyMaxS float64           `json:"ready_max_seconds"`
	Headline  map[string]Figure `json:"headline"`
}

// detectionLatency pushes a new SHA to n PRs (each in its own repository
// where possible) at random moments 5–15 s apart, so that the pushes fall
// at every phase of the poll interval, and measures from each push to the
// daemon seeing the SHA, starting its deploy, and Ready (the row's
// timestamps, which the daemon records).
func detectionLatency(t *testing.T, ctx context.Context, w *world, p *daemonProc, interval time.Duration, n int) latencyResult {
	t.Helper()
	res := latencyResult{Pushes: n, IntervalS: interval.Seconds()}
	st, err := state.Open(ctx, w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	type push struct {
		key model.Key
		sha string
		at  time.Time
	}
	if n > len(w.repos)*w.perRepo {
		t.Fatalf("%d pushes need as many PRs; the world has %d", n, len(w.repos)*w.perRepo)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var pushes []push
	for i := 0; i < n; i++ {
		if i > 0 {
			time.Sleep(5*time.Second + time.Duration(rng.Int64N(int64(10*time.Second))))
		}
		// Each push to its own PR, in its own repository while there are
		// enough.
		repo := w.repos[i%len(w.repos)]
		num := 1 + (i/len(w.repos))%w.perRepo
		sha := e2e.SHA(fmt.Sprint("latency", i, w.id))
		if err := w.gh.Push(repo, num, sha); err != nil {
			t.Fatal(err)
		}
		pushes = append(pushes, push{model.Key{Repo: repo, Number: num}, sha, time.Now()})
	}
	for _, x := range pushes {
		for {
			row, ok, err := st.Get(ctx, x.key)
			if err != nil {
				t.Fatal(err)
			}
			if ok && row.Status == model.StatusReady && row.DeployedSHA == x.sha {
				res.SeenS = append(res.SeenS, round2(row.SHAFirstSeenAt.Sub(x.at).Seconds()))
				res.StartS = append(res.StartS, round2(row.DeployStartedAt.Sub(x.at).Seconds()))
				res.ReadyS = append(res.ReadyS, round2(row.ReadyAt.Sub(x.at).Seconds()))
				break
			}
			if ok && row.DesiredSHA == x.sha && row.Status == model.StatusFailed && row.NextAttemptAt.IsZero() {
				t.Fatalf("%s failed at %s: %s", x.key, x.sha[:7], row.LastError)
			}
			if ctx.Err() != nil {
				t.Fatalf("%s never Ready at %s: %+v\n%s", x.key, x.sha[:7], row, tail(p.logs.String(), 20))
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	res.SeenP50S, res.SeenP95S = round1(percentile(res.SeenS, .5)), round1(percentile(res.SeenS, .95))
	res.StartP50S, res.StartP95S = round1(percentile(res.StartS, .5)), round1(percentile(res.StartS, .95))
	res.ReadyP50S, res.ReadyP95S, res.ReadyMaxS = round1(percentile(res.ReadyS, .5)), round1(percentile(res.ReadyS, .95)), round1(percentile(res.ReadyS, 1))
	res.Headline = map[string]Figure{
		"latency.ready_p50_seconds": {res.ReadyP50S, "s", lower},
		"latency.ready_p95_seconds": {res.ReadyP95S, "s", lower},
		"latency.start_p95_seconds": {res.StartP95S, "s", lower},
	}
	return res
}

// budget extrapolates the measured per-repository costs to 100 repositories
// and solves for the shortest poll interval under GitHub's 5,000/h.
func budget(r idleResult) budgetResult {
	const limit, repos = 5000, 100
	scale := float64(repos) / float64(r.Repos)
	b := budgetResult{Limit: limit, Repos: repos, OpenPRs: repos * r.PRsPerRepo}
	b.IdleChargedPerCycle = float64(r.IdleChargedMax) * scale
	b.ResyncPerHour = float64(r.Resync.Charged) * scale
	b.PushCost = float64(r.Push.Charged)
	b.PushesPerHour = 0.10 * float64(b.OpenPRs)
	b.CycleWallS = math.Round(r.IdleWallMSP50*scale/1000*100) / 100
	b.RequestsPerCycle = r.IdleRequestsAvg * scale
	// GitHub's documented secondary limit: 900 points per minute for REST,
	// 1 point per GET. Whether a 304 counts is not documented: assume it does.
	b.SecondaryMinS = math.Round(b.RequestsPerCycle/900*60*10) / 10
	solve := func(fixed float64) float64 {
		left := limit - fixed
		if left <= 0 {
			return math.Inf(1) // no interval fits
		}
		if b.IdleChargedPerCycle == 0 {
			return 0 // not bounded by the primary limit
		}
		return 3600 / (left / b.IdleChargedPerCycle)
	}
	b.IdleMinIntervalS = solve(b.ResyncPerHour)
	b.PushMinIntervalS = solve(b.ResyncPerHour + b.PushesPerHour*b.PushCost)
	b.Note = "0 means idle cycles are free (304s): the primary limit does not bound the interval; the cycle wall time and GitHub's secondary limits do"
	return b
}

func fmtInterval(s float64) string {
	switch {
	case math.IsInf(s, 1):
		return "none (budget exceeded by fixed costs)"
	case s == 0:
		return "unbounded by the primary limit (idle cycles cost 0)"
	}
	return fmt.Sprintf("%.1f s", s)
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// observeCost is one way of observing the cluster, averaged over calls.
type observeCost struct {
	Calls       int     `json:"calls"`
	WallMS      float64 `json:"wall_ms_avg"`
	CPUMS       float64 `json:"cpu_ms_avg"`
	APIRequests float64 `json:"api_requests_avg"`
}

// compareObserve measures the cluster observation of one cycle as the
// daemon did it without a record index (every release read and decoded)
// and as it does now (only changed releases), on the same namespaces.
func compareObserve(t *testing.T, ctx context.Context, w *world, instance string, calls int) (full, indexed observeCost) {
	t.Helper()
	var reqs atomic.Int64
	rc := rest.CopyConfig(w.kube.RESTConfig)
	rc.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) { reqs.Add(1); return rt.RoundTrip(r) })
	})
	kc, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ns := &kube.Namespaces{Client: kc, Instance: instance}
	measure := func(cl *kube.Cluster) observeCost {
		if _, err := cl.Observe(ctx, nil); err != nil { // warm: the index's first read
			t.Fatal(err)
		}
		reqs.Store(0)
		cpu0, t0 := cpuTime(), time.Now()
		for i := 0; i < calls; i++ {
			if _, err := cl.Observe(ctx, nil); err != nil {
				t.Fatal(err)
			}
		}
		n := float64(calls)
		return observeCost{Calls: calls, WallMS: round1(ms(time.Since(t0)) / n), CPUMS: round1(ms(cpuTime()-cpu0) / n),
			APIRequests: float64(reqs.Load()) / n}
	}
	// The daemon keeps Helm's records in PostgreSQL (state.HelmReleases).
	st, err := state.Open(ctx, w.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	store := st.HelmReleases()
	full = measure(&kube.Cluster{Client: kc, Namespaces: ns, Releases: &kube.Releases{RESTConfig: rc, Store: store}})
	indexed = measure(&kube.Cluster{Client: kc, Namespaces: ns, Releases: &kube.Releases{RESTConfig: rc, Store: store}, Records: store})
	return full, indexed
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
