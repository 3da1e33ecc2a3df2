package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/previewd/previewd/internal/harness/pgserver"
)

// database is the demo's own database on some PostgreSQL server; drop
// removes it and stops the server if the demo started it.
type database struct {
	URL    string // the demo database
	Name   string
	Source string // where the server came from, for the output

	adminURL  string
	throwaway *pgserver.Server
}

// createDatabase finds a server (adminURL if set, else a local one on
// 127.0.0.1:5432, else a throwaway one started with initdb and pg_ctl) and
// creates a fresh database previewd_demo_<random> on it.
func createDatabase(ctx context.Context, adminURL string) (*database, error) {
	db := &database{adminURL: adminURL}
	switch {
	case adminURL != "":
		if err := pgserver.CheckAdmin(ctx, adminURL); err != nil {
			return nil, fmt.Errorf("using the given PostgreSQL server: %w", err)
		}
		db.Source = "given server " + redactURL(adminURL)
	default:
		var tried []string
		// The usual local PostgreSQL with trust authentication on loopback.
		for _, u := range pgserver.LocalAdminURLs() {
			err := pgserver.CheckAdmin(ctx, u)
			if err == nil {
				db.adminURL = u
				db.Source = "local server " + redactURL(u)
				break
			}
			tried = append(tried, fmt.Sprintf("%s: %v", redactURL(u), err))
		}
		if db.adminURL == "" {
			srv, err := pgserver.StartThrowaway(ctx, "previewd-demo-pg-")
			if errors.Is(err, pgserver.ErrNoBinaries) {
				err = errNoBinaries
			}
			if err != nil {
				return nil, fmt.Errorf("%w (and no local server: %s)", err, strings.Join(tried, "; "))
			}
			db.throwaway = srv
			db.adminURL = srv.AdminURL()
			db.Source = "throwaway server started with pg_ctl in " + srv.Dir()
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
		if err := db.throwaway.Stop(ctx); err != nil {
			errs = append(errs, err)
		}
		db.throwaway = nil
	}
	return errors.Join(errs...)
}

// errNoBinaries replaces pgserver.ErrNoBinaries in the demo's output.
var errNoBinaries = errors.New("no PostgreSQL answers on 127.0.0.1:5432 and initdb/pg_ctl are not installed " +
	"(apt-get install postgresql), so the demo cannot start one")

// adminExec is pgserver.AdminExec bounded to 30 seconds.
func adminExec(ctx context.Context, connString, sql string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return pgserver.AdminExec(ctx, connString, sql)
}

// redactURL hides the password and the query of the URL s for the output.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.RawQuery = ""
	return u.Redacted()
}
