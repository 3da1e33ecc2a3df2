package pgserver

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartThrowaway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	if _, err := FindBinaries(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := StartThrowaway(ctx, "previewd-pgserver-test-")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = s.Stop(context.Background())
		}
	}()
	if s.Port() == 5432 || s.Port() == 0 {
		t.Errorf("throwaway server on port %d", s.Port())
	}
	if !strings.HasPrefix(filepath.Base(s.Dir()), "previewd-pgserver-test-") {
		t.Errorf("server directory %s not named after the pattern", s.Dir())
	}
	if err := CheckAdmin(ctx, s.AdminURL()); err != nil {
		t.Fatalf("throwaway server: %v", err)
	}
	if err := AdminExec(ctx, s.AdminURL(), `CREATE DATABASE scratch`); err != nil {
		t.Fatal(err)
	}
	var fsync string
	conn, err := pgx.Connect(ctx, s.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if fsync != "off" {
		t.Errorf("fsync = %q, want off", fsync)
	}

	stopped = true
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir()); !os.IsNotExist(err) {
		t.Errorf("server directory %s still there after stop (stat: %v)", s.Dir(), err)
	}
	if err := CheckAdmin(ctx, s.AdminURL()); err == nil {
		t.Error("server still answers after stop")
	}
}

func TestNoServer(t *testing.T) {
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	u := "postgres://postgres@127.0.0.1:" + strconv.Itoa(port) + "/postgres?sslmode=disable&connect_timeout=3"
	if err := CheckAdmin(t.Context(), u); err == nil || !strings.Contains(err.Error(), "connecting") {
		t.Errorf("CheckAdmin on a closed port: err = %v, want a connecting error", err)
	}
	if err := AdminExec(t.Context(), u, `SELECT 1`); err == nil || !strings.Contains(err.Error(), "connecting") {
		t.Errorf("AdminExec on a closed port: err = %v, want a connecting error", err)
	}
}

func TestLocalAdminURLs(t *testing.T) {
	a := LocalAdminURLs()
	if len(a) != 2 || !strings.HasPrefix(a[0], "postgres://postgres@127.0.0.1:5432/") ||
		!strings.HasPrefix(a[1], "postgres://root@127.0.0.1:5432/") {
		t.Errorf("LocalAdminURLs() = %q", a)
	}
	a[0] = "changed"
	if LocalAdminURLs()[0] == "changed" {
		t.Error("LocalAdminURLs returns shared state")
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:secret@h:5/db?sslmode=disable", "postgres://u:xxxxx@h:5/db?sslmode=disable"},
		{"postgres://u@h:5/db", "postgres://u@h:5/db"},
		{"host=h user=u password=p", "host=h user=u password=p"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	got, err := exec.Command("sh", "-c", `printf '[%s]' `+shellJoin([]string{"it's", "a b", "", "$HOME"})).Output()
	if err != nil {
		t.Skip(err)
	}
	if want := "[it's][a b][][$HOME]"; string(got) != want {
		t.Errorf("shellJoin round trip = %s, want %s", got, want)
	}
}

func TestVersionOrder(t *testing.T) {
	if !(versionOf("/usr/lib/postgresql/16/bin") > versionOf("/usr/lib/postgresql/9.6/bin")) {
		t.Error("16 should sort above 9.6")
	}
	if versionOf("/usr/pgsql-15/bin") != 15 {
		t.Errorf("versionOf(/usr/pgsql-15/bin) = %v", versionOf("/usr/pgsql-15/bin"))
	}
}

func TestMissingBinariesMessage(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := findBinariesIn([]string{t.TempDir() + "/*/bin"})
	if !errors.Is(err, ErrNoBinaries) {
		t.Errorf("err = %v, want ErrNoBinaries", err)
	}
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("err = %v, want one that says to apt-get install postgresql", err)
	}
}
