package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Server is a throwaway PostgreSQL server started by this process in a
// temporary directory. It listens on a free loopback port and trusts every
// local connection; Stop shuts it down and removes the directory.
type Server struct {
	binDir string // where initdb and pg_ctl are
	dir    string // temporary directory: data/, the socket and the log
	runAs  string // system user the binaries run as; "" for the current user
	port   int
	url    string // admin URL
}

// AdminURL returns a connection string for the superuser postgres and the
// database postgres.
func (s *Server) AdminURL() string { return s.url }

// Dir returns the server's temporary directory: its data directory, socket
// and log.
func (s *Server) Dir() string { return s.dir }

// Port returns the loopback port the server listens on.
func (s *Server) Port() int { return s.port }

// ErrNoBinaries is returned when initdb and pg_ctl cannot be found.
var ErrNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin; " +
	"install them (apt-get install postgresql)")

// binaryDirs are the usual versioned install directories.
var binaryDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

// FindBinaries returns the directory holding both initdb and pg_ctl:
// the one in PATH, else the newest of the usual versioned install
// directories (/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin). It returns
// ErrNoBinaries if there is none.
func FindBinaries() (string, error) { return findBinariesIn(binaryDirs) }

func findBinariesIn(patterns []string) (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	var dirs []string
	for _, pattern := range patterns {
		m, _ := filepath.Glob(pattern) // patterns are valid
		dirs = append(dirs, m...)
	}
	// Newest first: compare the version directory numerically.
	sort.SliceStable(dirs, func(i, j int) bool {
		return versionOf(dirs[i]) > versionOf(dirs[j])
	})
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

// versionOf returns the major version in a path like
// /usr/lib/postgresql/15/bin or /usr/pgsql-15/bin, or 0.
func versionOf(binDir string) float64 {
	base := filepath.Base(filepath.Dir(binDir))
	base = strings.TrimPrefix(base, "pgsql-")
	v, err := strconv.ParseFloat(base, 64)
	if err != nil {
		return 0
	}
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// StartThrowaway finds the binaries (see FindBinaries), initialises a
// cluster in a new temporary directory named after dirPattern (as in
// os.MkdirTemp) and starts it on a free loopback port. When this process
// runs as root, the binaries run as the postgres system user. The caller
// must Stop the server.
func StartThrowaway(ctx context.Context, dirPattern string) (*Server, error) {
	binDir, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	s := &Server{binDir: binDir}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		s.runAs = "postgres"
	}
	s.dir, err = os.MkdirTemp("", dirPattern)
	if err != nil {
		return nil, fmt.Errorf("creating directory for throwaway server: %w", err)
	}
	if err := s.start(ctx); err != nil {
		_ = os.RemoveAll(s.dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	if s.runAs != "" {
		u, err := user.Lookup(s.runAs)
		if err != nil {
			return fmt.Errorf("running as root, looking up system user %q to run PostgreSQL as: %w", s.runAs, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return fmt.Errorf("handing %s to user %s: %w", s.dir, s.runAs, err)
		}
	}
	data := filepath.Join(s.dir, "data")
	out, err := s.run(ctx, "initdb", "-D", data, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if err != nil {
		return fmt.Errorf("running initdb: %w\n%s", err, out)
	}
	// The port is free when chosen, but another process may take it before
	// postgres binds it: retry with a new port.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return err
		}
		logFile := filepath.Join(s.dir, "postgres.log")
		opts := fmt.Sprintf("-k %s -c listen_addresses=127.0.0.1 -p %d -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
			s.dir, port)
		out, err := s.run(ctx, "pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "-o", opts, "start")
		if err == nil {
			s.port = port
			s.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=10", port)
			return nil
		}
		log, _ := os.ReadFile(logFile)
		lastErr = fmt.Errorf("starting throwaway server with pg_ctl: %w\n%s\n%s", err, out, tail(log, 2000))
		if !bytes.Contains(log, []byte("could not bind")) && !bytes.Contains(log, []byte("already in use")) {
			break
		}
	}
	return lastErr
}

// Stop shuts the server down (fast, else immediate) and removes its
// directory.
func (s *Server) Stop(ctx context.Context) error {
	data := filepath.Join(s.dir, "data")
	out, err := s.run(ctx, "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop")
	if err != nil {
		out2, err2 := s.run(ctx, "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
		if err2 != nil {
			return fmt.Errorf("stopping throwaway server in %s: %w\n%s\n%s", s.dir, err, out, out2)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("removing throwaway server directory: %w", err)
	}
	return nil
}

// run runs one of the PostgreSQL binaries, as s.runAs if set, and returns
// its combined output.
func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.binDir, name)
	var cmd *exec.Cmd
	switch {
	case s.runAs == "":
		cmd = exec.CommandContext(ctx, path, args...)
	case haveRunuser():
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	default:
		cmd = exec.CommandContext(ctx, "su", s.runAs, "-s", "/bin/sh", "-c", shellJoin(append([]string{path}, args...)))
	}
	// Run in the server directory: the postgres user may not be allowed to
	// enter the caller's working directory.
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

func haveRunuser() bool {
	_, err := exec.LookPath("runuser")
	return err == nil
}

// shellJoin quotes args for sh -c.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
