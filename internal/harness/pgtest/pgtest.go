// Package pgtest gives tests a fresh, empty PostgreSQL database.
//
// The server is found once per test binary, in this order:
//
//  1. PREVIEWD_TEST_DATABASE_URL, if set (a URL or keyword/value string
//     naming a role that may CREATE DATABASE). It is used as is: if it does
//     not answer, tests fail rather than fall back.
//  2. A local server on 127.0.0.1:5432 reached as user postgres, then as
//     user root, without a password (trust authentication).
//  3. A throwaway server: initdb into a temporary directory and pg_ctl start
//     on a free loopback port. The binaries are looked up in PATH, then in
//     /usr/lib/postgresql/*/bin and /usr/pgsql-*/bin (newest version
//     first). When the tests run as root, the binaries run as the postgres
//     system user. A package whose tests may start one must call Main from
//     its TestMain so that the server is stopped after the tests.
//
// PREVIEWD_TEST_PG_THROWAWAY=1 skips step 2 and always starts a throwaway
// server. Every database is created for one test and force-dropped in
// t.Cleanup. All tests that use pgtest are skipped under -short.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/previewd/previewd/internal/harness/leak"
	"github.com/previewd/previewd/internal/harness/pgserver"
)

// Environment variables read by pgtest.
const (
	// EnvURL names a server to use instead of discovering one.
	EnvURL = "PREVIEWD_TEST_DATABASE_URL"
	// EnvThrowaway, set to 1, forces a throwaway server even when a local
	// server answers on port 5432.
	EnvThrowaway = "PREVIEWD_TEST_PG_THROWAWAY"
)

// The server of this test binary. Test helpers are the one place where
// package state is unavoidable: the server is shared by every test of the
// binary and stopped by Main.
var binary struct {
	once sync.Once
	mu   sync.Mutex
	srv  *server
	err  error
}

// server is a PostgreSQL server that test databases are created on.
type server struct {
	adminURL  string           // connects as a role that may create databases
	throwaway *pgserver.Server // non-nil if this binary started the server
	source    string           // how the server was found, for messages
}

// Main runs the tests and then stops the throwaway server, if one was
// started, before exiting with the tests' exit code. Call it from TestMain:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	// After a throwaway server's process watcher ended.
	os.Exit(leak.After(code))
}

// Shutdown stops the throwaway server of this test binary, if any. Main
// calls it; a TestMain that combines harnesses calls it after m.Run.
func Shutdown() error { return shutdown() }

// shutdown stops the throwaway server of this binary, if any.
func shutdown() error {
	binary.mu.Lock()
	defer binary.mu.Unlock()
	if binary.srv == nil || binary.srv.throwaway == nil {
		return nil
	}
	tw := binary.srv.throwaway
	binary.srv.throwaway = nil
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return tw.Stop(ctx)
}

// discover returns the server of this test binary, finding or starting it
// on first use.
func discover() (*server, error) {
	binary.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		srv, err := findServer(ctx)
		binary.mu.Lock()
		binary.srv, binary.err = srv, err
		binary.mu.Unlock()
	})
	binary.mu.Lock()
	defer binary.mu.Unlock()
	return binary.srv, binary.err
}

func findServer(ctx context.Context) (*server, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if err := pgserver.CheckAdmin(ctx, u); err != nil {
			return nil, fmt.Errorf("using %s: %w", EnvURL, err)
		}
		return &server{adminURL: u, source: EnvURL}, nil
	}
	var tried []string
	if os.Getenv(EnvThrowaway) != "1" {
		for _, u := range pgserver.LocalAdminURLs() {
			err := pgserver.CheckAdmin(ctx, u)
			if err == nil {
				return &server{adminURL: u, source: pgserver.Redact(u)}, nil
			}
			tried = append(tried, fmt.Sprintf("%s: %v", pgserver.Redact(u), err))
		}
	}
	tw, err := startThrowaway(ctx)
	if err != nil {
		if len(tried) > 0 {
			err = fmt.Errorf("%w (no local server either: %s)", err, strings.Join(tried, "; "))
		}
		return nil, err
	}
	return &server{adminURL: tw.AdminURL(), throwaway: tw, source: "throwaway server in " + tw.Dir()}, nil
}

// URL returns a connection string for a new, empty database that exists for
// the duration of the test and is force-dropped in t.Cleanup. It skips the
// test under -short and fails it if no PostgreSQL server can be found or
// started.
func URL(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("pgtest: skipping PostgreSQL test in -short mode")
	}
	srv, err := discover()
	if err != nil {
		t.Fatalf("pgtest: no PostgreSQL server for tests: %v", err)
	}
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgserver.AdminExec(ctx, srv.adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: creating database %s on %s: %v", name, srv.source, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// WITH (FORCE) (PostgreSQL 13+) terminates sessions a test left open.
		err := pgserver.AdminExec(ctx, srv.adminURL,
			"DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	u, err := withDatabase(srv.adminURL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

// Pool returns a pool connected to a new, empty database (see URL). The
// pool is closed before the database is dropped.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		t.Fatalf("pgtest: opening pool: %v", err)
	}
	t.Cleanup(pool.Close) // runs before the drop registered by URL
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("pgtest: pinging new database: %v", err)
	}
	return pool
}

// dbName returns a database name unique to this call: a readable part of
// the test name and a random suffix, within the 63-byte identifier limit.
func dbName(testName string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 36 {
			break
		}
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:]) // never fails
	return "pgtest_" + b.String() + "_" + hex.EncodeToString(suffix[:])
}

// withDatabase returns connString with its database replaced by name. Both
// URLs and keyword/value strings are accepted.
func withDatabase(connString, name string) (string, error) {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "", fmt.Errorf("parsing server URL: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In keyword/value strings a later setting wins.
	return connString + " dbname=" + name, nil
}
