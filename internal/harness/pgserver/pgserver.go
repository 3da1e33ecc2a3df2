// Package pgserver finds and starts PostgreSQL servers for the tests
// (internal/pgtest) and the demo (internal/demo): it checks that a role may
// create databases, runs administrative statements, and starts a throwaway
// server with initdb and pg_ctl in a temporary directory.
package pgserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// LocalAdminURLs returns the connection strings of the usual local server
// on 127.0.0.1:5432 with trust authentication, as user postgres, then as
// user root. Callers try them, in order, before starting a throwaway
// server.
func LocalAdminURLs() []string {
	return []string{
		"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3",
		"postgres://root@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3",
	}
}

// CheckAdmin connects to connString and checks that its role may create
// databases.
func CheckAdmin(ctx context.Context, connString string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(ctx,
		`SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user`).Scan(&ok)
	if err != nil {
		return fmt.Errorf("checking privileges: %w", err)
	}
	if !ok {
		return errors.New("role may not create databases")
	}
	return nil
}

// AdminExec connects to connString, runs one statement (such as CREATE
// DATABASE, which may not run in a transaction) and disconnects. ctx bounds
// the whole call.
func AdminExec(ctx context.Context, connString, sql string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// Redact hides the password of a URL for messages. Strings that are not
// URLs with a user, such as keyword/value strings, are returned as is.
func Redact(connString string) string {
	u, err := url.Parse(connString)
	if err != nil || u.User == nil {
		return connString
	}
	return u.Redacted()
}
