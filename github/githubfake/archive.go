package githubfake

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// codeloadPrefix is where the fake serves repository archives, as GitHub
// serves them from codeload.github.com.
const codeloadPrefix = "/_codeload/"

// archiveTTL is how long an archive address works (GitHub's are valid
// for minutes).
const archiveTTL = 5 * time.Minute

type archiveGrant struct {
	repo    string
	sha     string
	expires time.Time
}

// SetFiles makes files (path → contents) the tree of repo at sha, as a
// commit pushed with them would be; GET .../tarball/{sha} then serves them.
// The commit becomes known to the repository.
func (s *Server) SetFiles(repo, sha string, files map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.ensureRepo(repo)
	r.commits[sha] = true
	if r.files == nil {
		r.files = map[string]map[string][]byte{}
	}
	cp := make(map[string][]byte, len(files))
	for k, v := range files {
		cp[k] = bytes.Clone(v)
	}
	r.files[sha] = cp
}

// Downloads is how many times the archive of repo at sha was downloaded.
func (s *Server) Downloads(repo, sha string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.downloads[strings.ToLower(repo)+"@"+sha]
}

// getTarball answers as GitHub does: 302 to a short-lived archive address.
func (s *Server) getTarball(c *call) reply {
	sha, ok := c.repo.resolveRef(c.params["ref"])
	if !ok {
		return noCommit(http.StatusNotFound, c.params["ref"])
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := hex.EncodeToString(b)
	s.archives[tok] = archiveGrant{repo: c.repo.fullName(), sha: sha, expires: c.now.Add(archiveTTL)}
	loc := strings.TrimSuffix(c.web, "/") + codeloadPrefix + c.repo.fullName() + "/legacy.tar.gz/" + sha + "?token=" + tok
	return reply{status: http.StatusFound, header: http.Header{"Location": {loc}}}
}

// serveCodeload serves an archive address handed out by getTarball.
func (s *Server) serveCodeload(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	g, ok := s.archives[r.URL.Query().Get("token")]
	if !ok || s.clock().After(g.expires) || !strings.HasSuffix(r.URL.Path, "/"+g.sha) {
		s.mu.Unlock()
		http.Error(w, "Not Found", http.StatusNotFound)
		return
	}
	rp := s.repoNamed(g.repo)
	files := maps.Clone(rp.files[g.sha])
	s.downloads[strings.ToLower(g.repo)+"@"+g.sha]++
	owner, name := rp.owner, rp.name
	s.mu.Unlock()

	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	// As git archive writes it: a global header naming the commit, then
	// one top directory, entries in path order.
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": g.sha}, Format: tar.FormatPAX})
	top := owner + "-" + name + "-" + g.sha[:7] + "/"
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top, Mode: 0o775})
	dirs := map[string]bool{}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		parts := strings.Split(p, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/") + "/"
			if !dirs[d] {
				dirs[d] = true
				_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: top + d, Mode: 0o775})
			}
		}
		_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: top + p, Mode: 0o664, Size: int64(len(files[p]))})
		_, _ = tw.Write(files[p])
	}
	_ = tw.Close()
	_ = zw.Close()
	w.Header().Set("Content-Type", "application/x-gzip")
	w.Header().Set("Content-Disposition", "attachment; filename="+top[:len(top)-1]+".tar.gz")
	_, _ = w.Write(buf.Bytes())
}
