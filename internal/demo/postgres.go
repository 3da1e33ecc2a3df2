package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// localServers are tried, in order, before a throwaway server is started:
// the usual local PostgreSQL with trust authentication on loopback.
var localServers = []string{
	"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3",
	"postgres://root@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3",
}

// database is the demo's own database on some PostgreSQL server; drop
// removes it and stops the server if the demo started it.
type database struct {
	URL    string // the demo database
	Name   string
	Source string // where the server came from, for the output

	adminURL  string
	throwaway *pgServer
}

// createDatabase finds a server (adminURL if set, else a local one on
// 127.0.0.1:5432, else a throwaway one started with initdb and pg_ctl) and
// creates a fresh database previewd_demo_<random> on it.
func createDatabase(ctx context.Context, adminURL string) (*database, error) {
	db := &database{adminURL: adminURL}
	switch {
	case adminURL != "":
		if err := checkAdmin(ctx, adminURL); err != nil {
			return nil, fmt.Errorf("using the given PostgreSQL server: %w", err)
		}
		db.Source = "given server " + redactURL(adminURL)
	default:
		var tried []string
		for _, u := range localServers {
			err := checkAdmin(ctx, u)
			if err == nil {
				db.adminURL = u
				db.Source = "local server " + redactURL(u)
				break
			}
			tried = append(tried, fmt.Sprintf("%s: %v", redactURL(u), err))
		}
		if db.adminURL == "" {
			srv, err := startPostgres(ctx)
			if err != nil {
				return nil, fmt.Errorf("%w (and no local server: %s)", err, strings.Join(tried, "; "))
			}
			db.throwaway = srv
			db.adminURL = srv.url
			db.Source = "throwaway server started with pg_ctl in " + srv.dir
		}
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	db.Name = "previewd_demo_" + hex.EncodeToString(suffix[:])
	if err := adminExec(ctx, db.adminURL, "CREATE DATABASE "+pgx.Identifier{db.Name}.Sanitize()); err != nil {
		_ = db.drop(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("creating database %s: %w", db.Name, err)
	}
	u, err := url.Parse(db.adminURL)
	if err != nil {
		return nil, fmt.Errorf("parsing server URL: %w", err)
	}
	u.Path, u.RawPath = "/"+db.Name, ""
	db.URL = u.String()
	return db, nil
}

// drop force-drops the demo database and stops a throwaway server.
func (db *database) drop(ctx context.Context) error {
	var errs []error
	if db.Name != "" {
		// WITH (FORCE) (PostgreSQL 13+) ends sessions a killed previewd left.
		err := adminExec(ctx, db.adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)")
		if err != nil {
			errs = append(errs, fmt.Errorf("dropping database %s: %w", db.Name, err))
		}
	}
	if db.throwaway != nil {
		if err := db.throwaway.stop(ctx); err != nil {
			errs = append(errs, err)
		}
		db.throwaway = nil
	}
	return errors.Join(errs...)
}

func checkAdmin(ctx context.Context, connString string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(ctx, `SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user`).Scan(&ok)
	if err != nil {
		return fmt.Errorf("checking privileges: %w", err)
	}
	if !ok {
		return errors.New("role may not create databases")
	}
	return nil
}

func adminExec(ctx context.Context, connString, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	return u.Redacted()
}

// pgServer is a PostgreSQL server the demo started in a temporary
// directory (the same recipe as internal/pgtest, which only tests may use).
type pgServer struct {
	binDir string
	dir    string
	runAs  string // system user the binaries run as ("" = current user)
	url    string
}

var pgBinaryDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin"}

func findPostgresBinaries() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(p); isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	var dirs []string
	for _, pattern := range pgBinaryDirs {
		m, _ := filepath.Glob(pattern)
		dirs = append(dirs, m...)
	}
	version := func(binDir string) float64 {
		v, _ := strconv.ParseFloat(strings.TrimPrefix(filepath.Base(filepath.Dir(binDir)), "pgsql-"), 64)
		return v
	}
	sort.SliceStable(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "pg_ctl")) {
			return dir, nil
		}
	}
	return "", errors.New("no PostgreSQL answers on 127.0.0.1:5432 and initdb/pg_ctl are not installed " +
		"(apt-get install postgresql), so the demo cannot start one")
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func startPostgres(ctx context.Context) (*pgServer, error) {
	binDir, err := findPostgresBinaries()
	if err != nil {
		return nil, err
	}
	srv := &pgServer{binDir: binDir}
	if srv.dir, err = os.MkdirTemp("", "previewd-demo-pg-"); err != nil {
		return nil, err
	}
	if err := srv.start(ctx); err != nil {
		_ = os.RemoveAll(srv.dir)
		return nil, err
	}
	return srv, nil
}

func (s *pgServer) start(ctx context.Context) error {
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		s.runAs = "postgres"
		u, err := user.Lookup(s.runAs)
		if err != nil {
			return fmt.Errorf("running as root, looking up system user postgres to run PostgreSQL as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(s.dir, uid, gid); err != nil {
			return err
		}
	}
	data := filepath.Join(s.dir, "data")
	if out, err := s.run(ctx, "initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return fmt.Errorf("running initdb: %w\n%s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	logFile := filepath.Join(s.dir, "postgres.log")
	opts := fmt.Sprintf("-k %s -c listen_addresses=127.0.0.1 -p %d -c fsync=off -c full_page_writes=off -c synchronous_commit=off", s.dir, port)
	if out, err := s.run(ctx, "pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "-o", opts, "start"); err != nil {
		log, _ := os.ReadFile(logFile)
		return fmt.Errorf("starting PostgreSQL with pg_ctl: %w\n%s\n%s", err, out, log)
	}
	s.url = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=10", port)
	return nil
}

func (s *pgServer) stop(ctx context.Context) error {
	data := filepath.Join(s.dir, "data")
	if out, err := s.run(ctx, "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop"); err != nil {
		if out2, err2 := s.run(ctx, "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop"); err2 != nil {
			return fmt.Errorf("stopping PostgreSQL in %s: %w\n%s\n%s", s.dir, err, out, out2)
		}
	}
	return os.RemoveAll(s.dir)
}

func (s *pgServer) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.binDir, name)
	var cmd *exec.Cmd
	if s.runAs == "" {
		cmd = exec.CommandContext(ctx, path, args...)
	} else if _, err := exec.LookPath("runuser"); err == nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		q := make([]string, 0, len(args)+1)
		for _, a := range append([]string{path}, args...) {
			q = append(q, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
		}
		cmd = exec.CommandContext(ctx, "su", s.runAs, "-s", "/bin/sh", "-c", strings.Join(q, " "))
	}
	cmd.Dir = s.dir // the postgres user may not enter the caller's directory
	return cmd.CombinedOutput()
}
