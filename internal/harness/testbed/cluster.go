// Package testbed starts the real parts that previewd's integration tests and
// demo run against: a local Kubernetes control plane (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok with one simulated node).
//
// The binaries are built once by deploy/testbed/build-kube.sh into a cache
// directory outside the repository (see BinDir).
package testbed

import (
	"context"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeVersion is the Kubernetes version the test bed runs.
const KubeVersion = "v1.37.2"

// NodeName is the simulated node every pod is scheduled on.
const NodeName = "kwok-node-0"

// FailImagePull and FailCrashLoop are image repositories that the test bed's
// kwok stages never make ready: a pod using them reports ImagePullBackOff or
// CrashLoopBackOff, as a kubelet would.
const (
	FailImagePull = "fail.kwok.invalid/imagepull"
	FailCrashLoop = "fail.kwok.invalid/crashloop"
)

//go:embed stages/*.yaml
var stagesFS embed.FS

// Options configure Start.
type Options struct {
	// Dir receives certificates, etcd data, logs and the pid file. Empty:
	// a new temporary directory.
	Dir string
	// BinDir holds the binaries. Empty: BinDir().
	BinDir string
	// Detach lets the processes outlive the calling process (make
	// cluster-up); otherwise they are killed when it dies.
	Detach bool
	// Logf reports progress; nil discards.
	Logf func(format string, args ...any)
}

// Cluster is a running (or connected) control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string
	RESTConfig *rest.Config
	Client     kubernetes.Interface

	procs []*os.Process
	// Ready is how long Start took until the node was Ready.
	Ready time.Duration
}

// BinDir is where build-kube.sh puts the binaries:
// $PREVIEWD_KUBE_BIN, else ${XDG_CACHE_HOME:-$HOME/.cache}/previewd/kube/<version>.
func BinDir() string {
	if d := os.Getenv("PREVIEWD_KUBE_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "previewd", "kube", KubeVersion)
}

var binaries = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// Start brings up a control plane and waits until a node is Ready and the
// default ServiceAccount exists. On failure the processes are stopped and
// their logs are kept in the returned error's directory.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	bin := opts.BinDir
	if bin == "" {
		bin = BinDir()
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Errorf("control-plane binary %s missing in %s: run deploy/testbed/build-kube.sh (make kube-bins) first", b, bin)
		}
	}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "previewd-testbed-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	begin := time.Now()
	c = &Cluster{Dir: dir}
	defer func() {
		if err != nil {
			_ = c.Stop()
			err = fmt.Errorf("%w (logs kept in %s)", err, dir)
		}
	}()

	p, err := writePKI(dir)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	apiURL := "https://127.0.0.1:" + strconv.Itoa(ports[2])

	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, apiURL, p); err != nil {
		return nil, err
	}
	stages, err := writeStages(dir)
	if err != nil {
		return nil, err
	}

	start := func(name string, args ...string) error {
		logFile, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			return err
		}
		defer logFile.Close()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.Dir = dir
		if opts.Detach {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		} else {
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		c.procs = append(c.procs, cmd.Process)
		go func() { _ = cmd.Wait() }() // reap; Stop kills by pid
		return c.writePIDs()
	}

	if err := start("etcd",
		"--name", "testbed",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "testbed="+peerURL,
		"--unsafe-no-fsync", "--log-level", "warn",
	); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, etcdURL+"/health", nil, 30*time.Second); err != nil {
		return nil, fmt.Errorf("waiting for etcd: %w", err)
	}
	logf("etcd healthy after %s", time.Since(begin).Round(time.Millisecond))

	if err := start("kube-apiserver",
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(ports[2]), "--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none",
		"--service-cluster-ip-range", "10.0.0.0/16", // a Service per preview: 1,000 previews need more than a /24
		"--client-ca-file", p.CACert,
		"--tls-cert-file", p.ServingCert, "--tls-private-key-file", p.ServingK,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", p.SAPub,
		"--service-account-signing-key-file", p.SAKey,
		"--authorization-mode", "Node,RBAC",
		// As kubeadm and the managed clusters: privileged containers are
		// valid, so that Pod Security (not validation) refuses them in a
		// preview namespace.
		"--allow-privileged=true",
		// No node.kubernetes.io/not-ready taint on the kwok node: the node
		// lifecycle controller that would lift it is off (see below).
		"--disable-admission-plugins", "TaintNodesByCondition",
		"--profiling=false",
	); err != nil {
		return nil, err
	}
	tlsCfg, err := adminTLS(p)
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, apiURL+"/readyz", tlsCfg, 90*time.Second); err != nil {
		return nil, fmt.Errorf("waiting for kube-apiserver /readyz: %w", err)
	}
	logf("kube-apiserver ready after %s", time.Since(begin).Round(time.Millisecond))

	// Experiments (BENCHMARKS.md): extra flags for the controllers, e.g.
	// PREVIEWD_TESTBED_KCM_ARGS="--kube-api-qps=200 --kube-api-burst=400".
	if err := start("kube-controller-manager", append([]string{
		"--kubeconfig", c.Kubeconfig,
		"--secure-port", "0", "--leader-elect=false",
		"--service-account-private-key-file", p.SAKey,
		"--root-ca-file", p.CACert,
		"--use-service-account-credentials=false",
		"--cluster-signing-cert-file", p.CACert, "--cluster-signing-key-file", p.CAKey,
		// The node lifecycle controller would mark kwok's node NotReady
		// between kwok's sparse status heartbeats and its pods NotReady for
		// good (kwok readies Pending pods only); the test bed simulates no
		// node failures, so it is off.
		"--controllers", "*,-node-lifecycle-controller",
	}, strings.Fields(os.Getenv("PREVIEWD_TESTBED_KCM_ARGS"))...)...); err != nil {
		return nil, err
	}
	if err := start("kube-scheduler", append([]string{
		"--kubeconfig", c.Kubeconfig, "--secure-port", "0", "--leader-elect=false",
	}, strings.Fields(os.Getenv("PREVIEWD_TESTBED_SCHEDULER_ARGS"))...)...); err != nil {
		return nil, err
	}
	if err := start("kwok",
		"--kubeconfig", c.Kubeconfig,
		"--config", stages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector", "kwok.x-k8s.io/node=fake",
		"--cidr", "10.244.0.0/16", "--node-ip", "10.1.0.1",
	); err != nil {
		return nil, err
	}

	if err := c.connect(); err != nil {
		return nil, err
	}
	if err := c.createNode(ctx); err != nil {
		return nil, err
	}
	if err := c.waitUsable(ctx, 90*time.Second); err != nil {
		return nil, err
	}
	c.Ready = time.Since(begin)
	logf("control plane ready after %s", c.Ready.Round(time.Millisecond))
	return c, nil
}

// Connect returns a Cluster for an already running control plane, e.g. one
// started by `make cluster-up`. Stop on it does nothing.
func Connect(kubeconfig string) (*Cluster, error) {
	c := &Cluster{Kubeconfig: kubeconfig, Dir: filepath.Dir(kubeconfig)}
	if err := c.connect(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Cluster) connect() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig %s: %w", c.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	c.RESTConfig, c.Client = cfg, cs
	return nil
}

func (c *Cluster) createNode(ctx context.Context) error {
	qty := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        NodeName,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
			Labels: map[string]string{"type": "kwok", "kubernetes.io/hostname": NodeName,
				"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
		},
		Status: corev1.NodeStatus{Capacity: qty, Allocatable: qty},
	}
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err == nil || apierrors.IsAlreadyExists(err) {
			return true, nil
		}
		return false, nil
	})
}

func (c *Cluster) waitUsable(ctx context.Context, timeout time.Duration) error {
	var why string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			why = "node " + NodeName + " not Ready (kwok)"
			return false, nil
		}
		if _, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			why = "default ServiceAccount not created yet (kube-controller-manager)"
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the cluster to be usable: %s: %w", why, err)
	}
	return nil
}

// Stop ends the processes this Cluster started (by pid, newest first) and
// removes its directory. A connected cluster is left alone.
func (c *Cluster) Stop() error {
	if len(c.procs) == 0 {
		return nil
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		stopProcess(c.procs[i].Pid)
	}
	c.procs = nil
	return nil
}

// Remove deletes the cluster's directory (certificates, data, logs).
func (c *Cluster) Remove() error { return os.RemoveAll(c.Dir) }

func (c *Cluster) writePIDs() error {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintln(&b, p.Pid)
	}
	return os.WriteFile(filepath.Join(c.Dir, "pids"), []byte(b.String()), 0o600)
}

// StopDir stops the processes recorded in dir/pids by a detached Start
// (make cluster-down). A missing pid file is not an error.
func StopDir(dir string) error {
	data, err := os.ReadFile(filepath.Join(dir, "pids"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	lines := strings.Fields(string(data))
	for i := len(lines) - 1; i >= 0; i-- {
		pid, err := strconv.Atoi(lines[i])
		if err == nil && pid > 1 {
			stopProcess(pid)
		}
	}
	return os.Remove(filepath.Join(dir, "pids"))
}

// stopProcess sends SIGTERM, waits up to 10 s, then SIGKILL.
func stopProcess(pid int) {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie still answers signal 0; read its state.
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeKubeconfig(path, server string, p *pki) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: admin
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: testbed
  context:
    cluster: testbed
    user: admin
    namespace: default
current-context: testbed
`, server, p.CACert, p.AdminCert, p.AdminKey)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

func writeStages(dir string) (string, error) {
	entries, err := fs.ReadDir(stagesFS, "stages")
	if err != nil {
		return "", err
	}
	var docs []string
	for _, e := range entries {
		b, err := stagesFS.ReadFile("stages/" + e.Name())
		if err != nil {
			return "", err
		}
		docs = append(docs, strings.TrimSpace(string(b)))
	}
	path := filepath.Join(dir, "kwok-stages.yaml")
	return path, os.WriteFile(path, []byte(strings.Join(docs, "\n---\n")+"\n"), 0o600)
}

func adminTLS(p *pki) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		return nil, err
	}
	// The serving certificate is checked by client-go later; this probe only
	// waits for the port to answer /readyz.
	return &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true}, nil //nolint:gosec // loopback readiness probe
}

func waitHTTP(ctx context.Context, url string, tlsCfg *tls.Config, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer client.CloseIdleConnections()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		_ = resp.Body.Close()
		last = resp.Status
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%s: last answer %q: %w", url, last, err)
	}
	return nil
}
