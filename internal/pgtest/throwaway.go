package pgtest

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

// throwaway is a PostgreSQL server started by this test binary in a
// temporary directory.
type throwaway struct {
	binDir string // where initdb and pg_ctl are
	dir    string // temporary directory: data/, the socket and the log
	runAs  string // system user the binaries run as; "" for the current user
	port   int
	url    string // admin URL
}

// errNoBinaries is returned when initdb and pg_ctl cannot be found.
var errNoBinaries = errors.New("PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin; " +
	"install them (apt-get install postgresql) or set " + EnvURL)

// binaryDirs are the usual versioned install directories.
var binaryDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

// findBinaries returns the directory holding both initdb and pg_ctl:
// the one in PATH, else the newest of the usual versioned install
// directories.
func findBinaries() (string, error) { return findBinariesIn(binaryDirs) }

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
	return "", errNoBinaries
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

// startThrowaway initialises a cluster in a new temporary directory and
// starts it on a free loopback port. The caller must stop it.
func startThrowaway(ctx context.Context) (*throwaway, error) {
	binDir, err := findBinaries()
	if err != nil {
		return nil, err
	}
	tw := &throwaway{binDir: binDir}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		tw.runAs = "postgres"
	}
	tw.dir, err = os.MkdirTemp("", "previewd-pgtest-")
	if err != nil {
		return nil, fmt.Errorf("creating directory for throwaway server: %w", err)
	}
	if err := tw.start(ctx); err != nil {
		_ = os.RemoveAll(tw.dir)
		return nil, err
	}
	return tw, nil
}

func (tw *throwaway) start(ctx context.Context) error {
	if tw.runAs != "" {
		u, err := user.Lookup(tw.runAs)
		if err != nil {
			return fmt.Errorf("running as root, looking up system user %q to run PostgreSQL as: %w", tw.runAs, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(tw.dir, uid, gid); err != nil {
			return fmt.Errorf("handing %s to user %s: %w", tw.dir, tw.runAs, err)
		}
	}
	data := filepath.Join(tw.dir, "data")
	out, err := tw.run(ctx, "initdb", "-D", data, "-A", "trust", "-U", "postgres",
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
		logFile := filepath.Join(tw.dir, "postgres.log")
		opts := fmt.Sprintf("-k %s -c listen_addresses=127.0.0.1 -p %d -c fsync=off -c full_page_writes=off -c synchronous_commit=off",
			tw.dir, port)
		out, err := tw.run(ctx, "pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "-o", opts, "start")
		if err == nil {
			tw.port = port
			tw.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=10", port)
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

// stop shuts the server down and removes its directory.
func (tw *throwaway) stop(ctx context.Context) error {
	data := filepath.Join(tw.dir, "data")
	out, err := tw.run(ctx, "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop")
	if err != nil {
		out2, err2 := tw.run(ctx, "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop")
		if err2 != nil {
			return fmt.Errorf("stopping throwaway server in %s: %w\n%s\n%s", tw.dir, err, out, out2)
		}
	}
	if err := os.RemoveAll(tw.dir); err != nil {
		return fmt.Errorf("removing throwaway server directory: %w", err)
	}
	return nil
}

// run runs one of the PostgreSQL binaries, as tw.runAs if set, and returns
// its combined output.
func (tw *throwaway) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(tw.binDir, name)
	var cmd *exec.Cmd
	switch {
	case tw.runAs == "":
		cmd = exec.CommandContext(ctx, path, args...)
	case haveRunuser():
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", tw.runAs, "--", path}, args...)...)
	default:
		cmd = exec.CommandContext(ctx, "su", tw.runAs, "-s", "/bin/sh", "-c", shellJoin(append([]string{path}, args...)))
	}
	// Run in the server directory: the postgres user may not be allowed to
	// enter the caller's working directory.
	cmd.Dir = tw.dir
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
