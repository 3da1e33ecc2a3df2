package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v4/pkg/action"
	ci "helm.sh/helm/v4/pkg/chart"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"
	"helm.sh/helm/v4/pkg/registry"

	"github.com/previewd/previewd/reconcile/model"
)

// RepoFiles reads one directory of a repository at a commit: every regular
// file under dir, by its path relative to dir ("Chart.yaml",
// "templates/deployment.yaml"). github.Client.RepoDir is one.
type RepoFiles interface {
	RepoDir(ctx context.Context, repo, sha, dir string) (map[string][]byte, error)
}

// RegistryAccess is how one repository's OCI chart is pulled.
type RegistryAccess struct {
	Username string
	// Password is the registry password or token; never logged.
	Password string
	// PlainHTTP talks to the registry without TLS.
	PlainHTTP bool
}

// String hides the password.
func (r RegistryAccess) String() string {
	return fmt.Sprintf("{user %q, password set: %t, plain HTTP: %t}", r.Username, r.Password != "", r.PlainHTTP)
}

// GoString hides the password from %#v.
func (r RegistryAccess) GoString() string { return r.String() }

// Cache bounds of Charts: the files of fetched charts, never the loaded
// charts (Helm changes a chart while it installs it, so every operation
// loads its own).
const (
	chartCacheEntries = 256
	chartCacheBytes   = 64 << 20
	// chartPullTimeout bounds one pull from an OCI registry.
	chartPullTimeout = 2 * time.Minute
)

// Charts loads the chart of one deploy wherever it comes from (a directory
// on disk, an OCI registry, the PR's repository at its head SHA) and checks
// that it can be installed as it is: its Chart.yaml dependencies must be
// vendored in its charts/ directory (nothing is fetched for them).
//
// A remote chart is fetched once: by repository, reference and version for
// an OCI chart (a version is taken as immutable, as registries that serve
// charts treat it), by repository, directory and SHA for a repo: chart. A
// chart directory on disk is read anew for every operation.
type Charts struct {
	// Repos reads repo: charts; nil refuses them.
	Repos RepoFiles
	// Registry is how each repository (owner/name) pulls its OCI chart;
	// a repository not listed pulls anonymously over TLS.
	Registry map[string]RegistryAccess
	Log      *slog.Logger

	mu      sync.Mutex
	entries map[string]*chartFiles
	order   []string // oldest first
	bytes   int
	// Fetches counts remote fetches by kind (tests and metrics read it).
	fetches map[model.ChartKind]int
}

type chartFiles struct {
	ready chan struct{} // closed when files (or err) are set
	files []*archive.BufferedFile
	size  int
	err   error
}

// ChartError is a chart that cannot be loaded or installed as it is: the
// PR's (or the configuration's) to fix, reported on the PR.
type ChartError struct {
	Ref model.ChartRef
	Err error
}

func (e *ChartError) Error() string { return fmt.Sprintf("chart %s: %v", e.Ref, e.Err) }
func (e *ChartError) Unwrap() error { return e.Err }

// AppFailure marks a broken chart as the PR's (or configuration's) problem
// rather than previewd's.
func (e *ChartError) AppFailure() bool { return true }

// TransientError is a chart fetch that failed for a passing reason (the
// source unreachable, unavailable or rate limited): reconcile.Transient.
type TransientError struct{ Err error }

func (e *TransientError) Error() string   { return e.Err.Error() }
func (e *TransientError) Unwrap() error   { return e.Err }
func (e *TransientError) Transient() bool { return true }

// Transient marks err as a passing failure to fetch (for RepoFiles
// implementations: GitHub unavailable or rate limited).
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &TransientError{Err: err}
}

// Load returns a freshly loaded chart for ref. A failed fetch (GitHub or
// the registry unreachable, rate limited, refusing) is an error of its own;
// a chart that was fetched and cannot be loaded is a *ChartError.
func (c *Charts) Load(ctx context.Context, ref model.ChartRef) (*chart.Chart, error) {
	var (
		ch  *chart.Chart
		err error
	)
	switch ref.Source.Kind {
	case model.ChartDir, "":
		ch, err = loader.Load(ref.Source.Location)
		if err != nil {
			return nil, &ChartError{Ref: ref, Err: err}
		}
	case model.ChartOCI, model.ChartRepo:
		files, ferr := c.fetch(ctx, ref)
		if ferr != nil {
			return nil, ferr
		}
		// LoadFiles keeps the slices it is given; Helm must not write
		// into the cached bytes.
		cp := make([]*archive.BufferedFile, len(files))
		for i, f := range files {
			cp[i] = &archive.BufferedFile{Name: f.Name, ModTime: f.ModTime, Data: bytes.Clone(f.Data)}
		}
		ch, err = loader.LoadFiles(cp)
		if err != nil {
			return nil, &ChartError{Ref: ref, Err: err}
		}
	default:
		return nil, fmt.Errorf("chart %s: unknown kind %q", ref, ref.Source.Kind)
	}
	if err := ch.Validate(); err != nil {
		return nil, &ChartError{Ref: ref, Err: err}
	}
	if deps := ch.Metadata.Dependencies; len(deps) > 0 {
		if err := checkVendored(ch); err != nil {
			return nil, &ChartError{Ref: ref, Err: err}
		}
	}
	return ch, nil
}

// checkVendored says which dependencies of Chart.yaml are not in charts/
// (Helm's own check, which the helm CLI runs before an install): previewd
// installs vendored dependencies only.
func checkVendored(ch *chart.Chart) error {
	reqs := make([]ci.Dependency, len(ch.Metadata.Dependencies))
	for i, d := range ch.Metadata.Dependencies {
		reqs[i] = d
	}
	if err := action.CheckDependencies(ch, reqs); err != nil {
		return fmt.Errorf("%w (previewd installs dependencies vendored in the chart's charts/ directory only: run `helm dependency build` and commit charts/)", err)
	}
	return nil
}

// Fetches is how many remote charts of kind were fetched (not served from
// the cache).
func (c *Charts) Fetches(kind model.ChartKind) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches[kind]
}

func cacheKey(ref model.ChartRef) string {
	switch ref.Source.Kind {
	case model.ChartRepo:
		return "repo\x00" + ref.Repo + "\x00" + ref.SHA + "\x00" + ref.Source.Location
	default:
		// By repository too: each repository pulls with its own access.
		return "oci\x00" + ref.Repo + "\x00" + ref.Source.Location + "\x00" + ref.Source.Version
	}
}

// fetch returns ref's files, fetching them once: concurrent callers for
// the same chart wait for one fetch; a failed fetch is not remembered.
func (c *Charts) fetch(ctx context.Context, ref model.ChartRef) ([]*archive.BufferedFile, error) {
	key := cacheKey(ref)
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]*chartFiles{}
		c.fetches = map[model.ChartKind]int{}
	}
	if e, ok := c.entries[key]; ok {
		c.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e.err != nil {
			return c.fetch(ctx, ref) // the failed entry is gone: try anew
		}
		return e.files, nil
	}
	e := &chartFiles{ready: make(chan struct{})}
	c.entries[key] = e
	c.fetches[ref.Source.Kind]++
	c.mu.Unlock()

	var files []*archive.BufferedFile
	var err error
	switch ref.Source.Kind {
	case model.ChartRepo:
		files, err = c.fetchRepo(ctx, ref)
	default:
		files, err = c.pullOCI(ref)
	}
	size := 0
	for _, f := range files {
		size += len(f.Data)
	}

	c.mu.Lock()
	e.files, e.err, e.size = files, err, size
	close(e.ready)
	if err != nil {
		delete(c.entries, key)
	} else {
		c.order = append(c.order, key)
		c.bytes += size
		for (len(c.order) > chartCacheEntries || c.bytes > chartCacheBytes) && len(c.order) > 1 {
			old := c.order[0]
			c.order = c.order[1:]
			if oe, ok := c.entries[old]; ok {
				c.bytes -= oe.size
				delete(c.entries, old)
			}
		}
	}
	c.mu.Unlock()
	return files, err
}

func (c *Charts) fetchRepo(ctx context.Context, ref model.ChartRef) ([]*archive.BufferedFile, error) {
	if c.Repos == nil {
		return nil, fmt.Errorf("chart %s: previewd has no GitHub reader for repo: charts", ref)
	}
	files, err := c.Repos.RepoDir(ctx, ref.Repo, ref.SHA, ref.Source.Location)
	if err != nil {
		return nil, fmt.Errorf("fetching chart %s: %w", ref, err)
	}
	if _, ok := files["Chart.yaml"]; !ok {
		return nil, &ChartError{Ref: ref, Err: fmt.Errorf("no Chart.yaml in %s at this commit (the chart: setting names the chart's directory in the repository)", ref.Source.Location)}
	}
	out, err := helmIgnored(files)
	if err != nil {
		return nil, &ChartError{Ref: ref, Err: err}
	}
	return out, nil
}

// helmIgnored applies the chart's .helmignore (and Helm's defaults) as
// Helm's directory loader does, in a stable order.
func helmIgnored(files map[string][]byte) ([]*archive.BufferedFile, error) {
	rules := ignore.Empty()
	if b, ok := files[ignore.HelmIgnore]; ok {
		r, err := ignore.Parse(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("reading .helmignore: %w", err)
		}
		rules = r
	}
	rules.AddDefaults()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []*archive.BufferedFile
next:
	for _, n := range names {
		// A directory rule skips everything under the directory.
		for d := path.Dir(n); d != "."; d = path.Dir(d) {
			if rules.Ignore(d, fileInfo{name: path.Base(d), dir: true}) {
				continue next
			}
		}
		if rules.Ignore(n, fileInfo{name: path.Base(n), size: int64(len(files[n]))}) {
			continue
		}
		out = append(out, &archive.BufferedFile{Name: n, Data: bytes.TrimPrefix(files[n], []byte("\xEF\xBB\xBF"))})
	}
	return out, nil
}

func (c *Charts) pullOCI(ref model.ChartRef) ([]*archive.BufferedFile, error) {
	acc := c.Registry[ref.Repo]
	opts := []registry.ClientOption{registry.ClientOptEnableCache(true)}
	if acc.Username != "" || acc.Password != "" {
		opts = append(opts, registry.ClientOptBasicAuth(acc.Username, acc.Password))
	}
	if acc.PlainHTTP {
		opts = append(opts, registry.ClientOptPlainHTTP())
	}
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: chartPullTimeout}
	opts = append(opts, registry.ClientOptHTTPClient(hc))
	rc, err := registry.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("chart %s: registry client: %w", ref, err)
	}
	res, err := rc.Pull(ref.Source.Location + ":" + ref.Source.Version)
	if err != nil {
		err = fmt.Errorf("pulling chart %s: %w", ref, scrubPassword(err, acc.Password))
		if _, ok := errors.AsType[*net.OpError](err); ok {
			err = Transient(err) // the registry unreachable
		}
		return nil, err
	}
	if res.Chart == nil || len(res.Chart.Data) == 0 {
		return nil, &ChartError{Ref: ref, Err: errors.New("the registry answered without a chart layer")}
	}
	files, err := archive.LoadArchiveFiles(bytes.NewReader(res.Chart.Data))
	if err != nil {
		return nil, &ChartError{Ref: ref, Err: err}
	}
	if c.Log != nil {
		c.Log.Info("pulled chart", "chart", ref.String(), "digest", res.Manifest.Digest)
	}
	return files, nil
}

// scrubPassword keeps a registry password out of an error's text (the
// registry client's messages carry none that we know of; this makes sure).
func scrubPassword(err error, password string) error {
	if password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "[redacted]"))
}

// fileInfo is the os.FileInfo that .helmignore rules look at.
type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (f fileInfo) Name() string { return f.name }
func (f fileInfo) Size() int64  { return f.size }
func (f fileInfo) Mode() fs.FileMode {
	if f.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (f fileInfo) ModTime() time.Time { return time.Time{} }
func (f fileInfo) IsDir() bool        { return f.dir }
func (f fileInfo) Sys() any           { return nil }

// ChartSourceDigest identifies what a repository's chart: setting deploys,
// for drift: a directory's contents; an OCI chart's reference and version;
// for a repo: chart, its directory (the chart then changes with the SHA,
// which is deployed anyway).
func ChartSourceDigest(src model.ChartSource) (string, error) {
	if src.Kind == model.ChartDir || src.Kind == "" {
		return ChartDigest(src.Location)
	}
	return src.String(), nil
}
