package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/previewd/previewd/internal/harness/e2e"
	"github.com/previewd/previewd/internal/harness/promtext"
)

// The scenarios that measure the daemon's own memory and CPU run the real
// binary ($PREVIEWD_BENCH_BINARY, or one built on first use) as a child
// process, so that the GitHub fake and the harness are not in its figures.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// previewdBinary is $PREVIEWD_BENCH_BINARY, else cmd/previewd built once
// into a temporary directory.
func previewdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("PREVIEWD_BENCH_BINARY"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "previewd-bench-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "previewd")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/previewd")
		cmd.Dir = e2e.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building previewd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// daemonProc is a running `previewd run`.
type daemonProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	logs *e2e.SyncBuffer
	done chan struct{}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// startDaemon runs the previewd binary on the world's configuration (with
// --pprof) and waits until /readyz answers 200: its first cycle is done.
func (w *world) startDaemon(ctx context.Context) *daemonProc {
	w.t.Helper()
	p := &daemonProc{t: w.t, addr: freeAddr(w.t), logs: &e2e.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(previewdBinary(w.t), "run", "--config", w.cfgPath, "--listen", p.addr, "--pprof",
		"--log-format", "text", "--log-level", "warn")
	p.cmd.Env = append(os.Environ(), "BENCH_GH_TOKEN="+w.token)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Killed with the test binary (a -timeout panic skips cleanups).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	w.t.Cleanup(p.stop)
	for {
		select {
		case <-p.done:
			w.t.Fatalf("previewd exited before it was ready:\n%s", p.logs.String())
		case <-ctx.Done():
			w.t.Fatalf("previewd not ready: %v\n%s", ctx.Err(), p.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if code, _ := p.get("/readyz"); code == http.StatusOK {
			return p
		}
	}
}

func (p *daemonProc) get(path string) (int, []byte) {
	resp, err := http.Get("http://" + p.addr + path)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// stop sends SIGTERM and waits (SIGKILL after 60 s).
func (p *daemonProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// procSample is the child's memory and CPU from /proc.
type procSample struct {
	At     time.Time
	RSSKiB int64         // VmRSS
	HWMKiB int64         // VmHWM: peak RSS since start
	CPU    time.Duration // utime + stime
}

// clkTck is USER_HZ, 100 on Linux for every architecture Go supports here.
const clkTck = 100

func (p *daemonProc) sample() (procSample, error) {
	s := procSample{At: time.Now()}
	pid := p.cmd.Process.Pid
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			s.RSSKiB, _ = strconv.ParseInt(fields[1], 10, 64)
		case "VmHWM:":
			s.HWMKiB, _ = strconv.ParseInt(fields[1], 10, 64)
		}
	}
	_ = f.Close()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name (which is in parentheses and may hold
	// spaces): state is field 3, utime 14, stime 15.
	rest := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(rest) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(rest[11], 10, 64)
	st, _ := strconv.ParseInt(rest[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clkTck
	return s, nil
}

// sampler records the child's /proc figures every period until stopped.
type sampler struct {
	mu      sync.Mutex
	samples []procSample
	stopc   chan struct{}
	donec   chan struct{}
}

func (p *daemonProc) startSampler(period time.Duration) *sampler {
	s := &sampler{stopc: make(chan struct{}), donec: make(chan struct{})}
	go func() {
		defer close(s.donec)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			if x, err := p.sample(); err == nil {
				s.mu.Lock()
				s.samples = append(s.samples, x)
				s.mu.Unlock()
			}
			select {
			case <-s.stopc:
				if x, err := p.sample(); err == nil {
					s.mu.Lock()
					s.samples = append(s.samples, x)
					s.mu.Unlock()
				}
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop takes a last sample and returns them all.
func (s *sampler) stop() []procSample {
	close(s.stopc)
	<-s.donec
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// usage summarises samples: RSS average and maximum, peak RSS (VmHWM),
// CPU used over the window, average cores, and the busiest window of at
// least one second.
type usage struct {
	RSSAvgMiB     float64 `json:"rss_avg_mib"`
	RSSMaxMiB     float64 `json:"rss_max_mib"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"` // VmHWM at the end
	CPUSeconds    float64 `json:"cpu_seconds"`
	WallSeconds   float64 `json:"wall_seconds"`
	CPUCoresAvg   float64 `json:"cpu_cores_avg"`
	CPUCoresPeak1 float64 `json:"cpu_cores_peak_1s"`
}

func summarize(ss []procSample) usage {
	var u usage
	if len(ss) == 0 {
		return u
	}
	var sum float64
	for _, s := range ss {
		rss := float64(s.RSSKiB) / 1024
		sum += rss
		u.RSSMaxMiB = max(u.RSSMaxMiB, rss)
	}
	first, last := ss[0], ss[len(ss)-1]
	u.RSSAvgMiB = round2(sum / float64(len(ss)))
	u.RSSMaxMiB = round2(u.RSSMaxMiB)
	u.PeakRSSMiB = round2(float64(last.HWMKiB) / 1024)
	u.CPUSeconds = round2(last.CPU.Seconds() - first.CPU.Seconds())
	u.WallSeconds = round2(last.At.Sub(first.At).Seconds())
	if u.WallSeconds > 0 {
		u.CPUCoresAvg = round2(u.CPUSeconds / u.WallSeconds)
	}
	j := 0
	for i := range ss {
		for j < i && ss[i].At.Sub(ss[j+1].At) >= time.Second {
			j++
		}
		if d := ss[i].At.Sub(ss[j].At); d >= time.Second {
			u.CPUCoresPeak1 = max(u.CPUCoresPeak1, (ss[i].CPU-ss[j].CPU).Seconds()/d.Seconds())
		}
	}
	u.CPUCoresPeak1 = round2(u.CPUCoresPeak1)
	return u
}

func round2(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

// metrics scrapes the daemon's /metrics (empty if it does not answer).
func (p *daemonProc) metrics() promtext.Metrics {
	_, b := p.get("/metrics")
	m, _ := promtext.Parse(bytes.NewReader(b))
	return m
}

// heapProfile saves the child's heap profile (after a GC) and returns the
// top entries by in-use space, as `go tool pprof -top` prints them.
func (p *daemonProc) heapProfile(path string, n int) ([]string, error) {
	code, b := p.get("/debug/pprof/heap?gc=1")
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /debug/pprof/heap: %d", code)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=inuse_space", "-nodecount", strconv.Itoa(n), path).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	return lines, nil
}

// apiServerCodes is the API server's request count by HTTP status code.
func (w *world) apiServerCodes(ctx context.Context) map[string]float64 {
	b, err := w.kube.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		w.t.Logf("API server metrics: %v", err)
		return nil
	}
	m, err := promtext.Parse(bytes.NewReader(b))
	if err != nil {
		w.t.Logf("API server metrics: %v", err)
		return nil
	}
	out := map[string]float64{}
	for _, s := range m {
		if s.Name == "apiserver_request_total" {
			out[s.Labels["code"]] += s.Value
		}
	}
	return out
}

// codeDelta is after - before for codes ≥ 400.
func codeDelta(before, after map[string]float64) map[string]int {
	out := map[string]int{}
	for code, v := range after {
		if c, _ := strconv.Atoi(code); c >= 400 {
			if d := int(v - before[code]); d > 0 {
				out[code] = d
			}
		}
	}
	return out
}

// watchedComms are the processes whose CPU the scenarios split out: what
// else on the machine competes with (or limits) the daemon.
var watchedComms = []string{"previewd", "kube-apiserver", "etcd", "kube-controller", "kube-scheduler", "kwok", "postgres"}

// cpuByProcess sums utime+stime of every process, by command name, for
// the watched names (the test binary itself is "bench.test": the GitHub
// fake and the harness).
func cpuByProcess() map[string]time.Duration {
	out := map[string]time.Duration{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := strconv.Itoa(os.Getpid())
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(stat[open+1 : end])
		if e.Name() == self {
			comm = "bench.test"
		}
		name := ""
		for _, w := range append(watchedComms, "bench.test") {
			if strings.HasPrefix(comm, w) {
				name = w
			}
		}
		if name == "" {
			continue
		}
		rest := strings.Fields(string(stat[end+1:]))
		if len(rest) < 13 {
			continue
		}
		ut, _ := strconv.ParseInt(rest[11], 10, 64)
		st, _ := strconv.ParseInt(rest[12], 10, 64)
		out[name] += time.Duration(ut+st) * time.Second / clkTck
	}
	return out
}

// coresUsed is the average cores each watched process used between two
// cpuByProcess readings wall apart (processes that exited in between are
// not counted).
func coresUsed(before, after map[string]time.Duration, wall time.Duration) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 && wall > 0 {
			out[k] = round2(d.Seconds() / wall.Seconds())
		}
	}
	return out
}
