package github

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"

	gh "github.com/google/go-github/v66/github"
)

// Bounds of RepoDir. A repository archive is read as a stream and nothing
// but the wanted directory is kept; reading stops at the end of it.
const (
	// MaxArchiveBytes bounds the compressed archive read for one
	// directory (a chart near the end of a large monorepository).
	MaxArchiveBytes = 512 << 20
	// MaxDirBytes bounds the files kept, names included: a chart is
	// kilobytes.
	MaxDirBytes = 20 << 20
	// MaxDirFiles bounds the number of files kept.
	MaxDirFiles = 10000
)

// ErrTooLarge: a repository archive or the directory read from it is over
// its bound.
var ErrTooLarge = errors.New("too large")

// RepoDir returns every regular file under dir in repo at sha, by its path
// relative to dir ("Chart.yaml", "templates/app.yaml"); dir "." is the
// repository's root. It reads the repository's tarball (GET
// /repos/{owner}/{repo}/tarball/{sha}: one API request, then the archive
// from the address GitHub redirects to, which carries its own short-lived
// credential and is never logged). A commit or directory that does not
// exist wraps ErrNotFound; a rate limit holds requests as every call does.
// Symbolic links are skipped.
func (c *Client) RepoDir(ctx context.Context, repo, sha, dir string) (map[string][]byte, error) {
	if err := c.held(); err != nil {
		return nil, err
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || owner == "" || name == "" {
		return nil, fmt.Errorf("github: repository %q is not owner/name", repo)
	}
	if sha == "" || strings.ContainsAny(sha, "/?#") {
		return nil, fmt.Errorf("github: %q is not a commit SHA", sha)
	}
	p := fmt.Sprintf("repos/%s/%s/tarball/%s", owner, name, sha)
	req, err := c.gh.NewRequest(http.MethodGet, p, nil)
	if err != nil {
		return nil, fmt.Errorf("building request GET %s: %w", p, err)
	}
	resp, err := c.archive.Do(req.WithContext(ctx))
	if err != nil {
		// A *url.Error names the address, which after the redirect
		// carries the archive's credential: keep only the cause.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: reading the archive of %s at %s: %s", ErrUnavailable, repo, short(sha), c.redact(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body = io.NopCloser(bytes.NewReader(data))
		resp.Request = req // the API request, not the redirect's address
		herr := gh.CheckResponse(resp)
		if herr == nil {
			herr = fmt.Errorf("unexpected status %s", resp.Status)
		}
		switch f := c.classify(herr); f.kind {
		case failRateLimited:
			return nil, c.hold(f, herr, http.MethodGet, p)
		case failUnavailable:
			return nil, fmt.Errorf("%w: reading the archive of %s at %s: %s", ErrUnavailable, repo, short(sha), resp.Status)
		case failNotFound:
			return nil, fmt.Errorf("%w: commit %s of %s (or the repository) is not readable with previewd's credentials", ErrNotFound, short(sha), repo)
		}
		return nil, fmt.Errorf("reading the archive of %s at %s: %s", repo, short(sha), resp.Status)
	}
	files, err := readTarDir(resp.Body, dir)
	if err != nil {
		return nil, fmt.Errorf("reading the archive of %s at %s: %w", repo, short(sha), err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no directory %s in %s at %s", ErrNotFound, dir, repo, short(sha))
	}
	return files, nil
}

// readTarDir reads a GitHub tarball (one top directory named after the
// repository and commit) and keeps the regular files under dir. Entries of
// one directory are contiguous in an archive made by git, so reading stops
// at the first entry after them.
func readTarDir(r io.Reader, dir string) (map[string][]byte, error) {
	counted := &boundedReader{r: r, left: MaxArchiveBytes}
	zr, err := gzip.NewReader(counted)
	if err != nil {
		return nil, fmt.Errorf("not a gzip archive: %w", err)
	}
	tr := tar.NewReader(zr)
	prefix := ""
	if dir != "." && dir != "" {
		prefix = strings.Trim(dir, "/") + "/"
	}
	files := map[string][]byte{}
	kept := 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			if counted.over {
				return nil, fmt.Errorf("%w: the archive is larger than %d MiB", ErrTooLarge, MaxArchiveBytes>>20)
			}
			return nil, fmt.Errorf("reading the archive: %w", err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		_, rel, ok := strings.Cut(h.Name, "/") // drop the top directory
		if !ok {
			continue
		}
		if !strings.HasPrefix(rel, prefix) {
			if len(files) > 0 {
				return files, nil // past the directory
			}
			continue
		}
		name := strings.TrimPrefix(rel, prefix)
		if h.Typeflag != tar.TypeReg || name == "" {
			continue
		}
		if c := path.Clean(name); c != name || c == ".." || strings.HasPrefix(c, "../") {
			return nil, fmt.Errorf("archive entry %q is not a clean path", h.Name)
		}
		if len(files) >= MaxDirFiles {
			return nil, fmt.Errorf("%w: directory %s has more than %d files", ErrTooLarge, dir, MaxDirFiles)
		}
		// Every file costs its name and some bookkeeping, so that many
		// empty files with long names cannot go round the bound.
		kept += len(name) + 64
		if h.Size > int64(MaxDirBytes-kept) {
			return nil, fmt.Errorf("%w: directory %s is larger than %d MiB", ErrTooLarge, dir, MaxDirBytes>>20)
		}
		b, err := io.ReadAll(io.LimitReader(tr, h.Size))
		if err != nil {
			return nil, fmt.Errorf("reading %s from the archive: %w", h.Name, err)
		}
		kept += len(b)
		files[name] = b
	}
}

// boundedReader fails once more than left bytes were asked for.
type boundedReader struct {
	r    io.Reader
	left int64
	over bool
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		b.over = true
		return 0, fmt.Errorf("%w: over %d MiB", ErrTooLarge, MaxArchiveBytes>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func short(sha string) string {
	if len(sha) > 7 {
		return sha[:7]
	}
	return sha
}
