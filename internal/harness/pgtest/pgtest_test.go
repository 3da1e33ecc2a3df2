package pgtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/previewd/previewd/internal/harness/pgserver"
)

func TestMain(m *testing.M) { Main(m) }

func TestURLGivesFreshDatabaseDroppedAfterTest(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	var names []string
	for i := range 2 {
		t.Run(fmt.Sprint("db", i), func(t *testing.T) {
			ctx := t.Context()
			conn, err := pgx.Connect(ctx, URL(t))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var name string
			var tables int
			err = conn.QueryRow(ctx, `SELECT current_database(),
				(SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))`).
				Scan(&name, &tables)
			if err != nil {
				t.Fatal(err)
			}
			if tables != 0 {
				t.Errorf("new database has %d tables, want 0", tables)
			}
			// Leave data and an open session behind: the drop must force.
			if _, err := conn.Exec(ctx, `CREATE TABLE leftover (x int)`); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("database names = %q, want two distinct", names)
	}
	srv, err := discover()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), srv.adminURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var left int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_database WHERE datname = ANY($1)`, names).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("%d of the test databases %q still exist after their tests", left, names)
	}
}

func TestPool(t *testing.T) {
	pool := Pool(t)
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT 40 + 2`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 42 {
		t.Errorf("got %d, want 42", n)
	}
}

func TestThrowawayServerDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	if _, err := pgserver.FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	tw, err := startThrowaway(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := tw.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}()
	if !strings.HasPrefix(filepath.Base(tw.Dir()), "previewd-pgtest-") {
		t.Errorf("throwaway server in %s, want a previewd-pgtest-* directory", tw.Dir())
	}
	if err := pgserver.CheckAdmin(ctx, tw.AdminURL()); err != nil {
		t.Errorf("throwaway server: %v", err)
	}
}

func TestNoBinariesHint(t *testing.T) {
	err := noBinariesHint(pgserver.ErrNoBinaries)
	want := "PostgreSQL server binaries (initdb, pg_ctl) not found in PATH or /usr/lib/postgresql/*/bin; " +
		"install them (apt-get install postgresql) or set " + EnvURL
	if err == nil || err.Error() != want || !errors.Is(err, pgserver.ErrNoBinaries) {
		t.Errorf("err = %v, want %q wrapping pgserver.ErrNoBinaries", err, want)
	}
	other := errors.New("other")
	if got := noBinariesHint(other); got != other {
		t.Errorf("noBinariesHint(other) = %v, want it unchanged", got)
	}
	if noBinariesHint(nil) != nil {
		t.Error("noBinariesHint(nil) != nil")
	}
}

// TestMainStopsThrowawayServer runs this test binary again with a throwaway
// server forced, and checks that Main stopped and removed it at exit.
func TestMainStopsThrowawayServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	if os.Getenv("PGTEST_HELPER") == "1" {
		t.Skip("already in the helper process")
	}
	if _, err := pgserver.FindBinaries(); err != nil {
		t.Skip(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperThrowaway$", "-test.v", "-test.count=1")
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, EnvURL+"=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "PGTEST_HELPER=1", EnvThrowaway+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
	var dir, url string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "THROWAWAY_DIR="); ok {
			dir = v
		}
		if v, ok := strings.CutPrefix(line, "THROWAWAY_URL="); ok {
			url = v
		}
	}
	if dir == "" || url == "" {
		t.Fatalf("helper did not report its server:\n%s", out)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("throwaway directory %s still there after the helper exited (stat: %v)", dir, err)
	}
	if err := pgserver.CheckAdmin(t.Context(), url); err == nil {
		t.Errorf("throwaway server %s still answers after the helper exited", url)
	}
}

// TestHelperThrowaway runs only in the process started by
// TestMainStopsThrowawayServer.
func TestHelperThrowaway(t *testing.T) {
	if os.Getenv("PGTEST_HELPER") != "1" {
		t.Skip("helper for TestMainStopsThrowawayServer")
	}
	u := URL(t)
	srv, err := discover()
	if err != nil {
		t.Fatal(err)
	}
	if srv.throwaway == nil {
		t.Fatalf("server is %s, want a throwaway server", srv.source)
	}
	conn, err := pgx.Connect(t.Context(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.Ping(t.Context()); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("THROWAWAY_DIR=%s\nTHROWAWAY_URL=%s\n", srv.throwaway.Dir(), srv.throwaway.AdminURL())
}

func TestDBName(t *testing.T) {
	a := dbName("TestSomething/with spaces & Ünïcode and a very long name that goes on and on and on")
	b := dbName("TestSomething/with spaces & Ünïcode and a very long name that goes on and on and on")
	if a == b {
		t.Errorf("two calls gave the same name %q", a)
	}
	if len(a) > 63 {
		t.Errorf("name %q is %d bytes, over PostgreSQL's 63", a, len(a))
	}
	for _, r := range a {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			t.Fatalf("name %q has character %q", a, r)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5/postgres?sslmode=disable", "postgres://u:p@h:5/x?sslmode=disable"},
		{"postgresql://h/", "postgresql://h/x"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=x"},
	} {
		got, err := withDatabase(tc.in, "x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
