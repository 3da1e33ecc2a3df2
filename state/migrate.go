package state

import (
	"context"
	"fmt"

	"github.com/previewd/previewd/migrations"
)

// migrateLockKey is the pg_advisory_lock key that serialises Migrate across
// processes: the bytes of "previewd" read as a big-endian int64.
const migrateLockKey int64 = 0x7072657669657764

// Migrate applies the embedded migrations that the database has not seen,
// in order, each in its own transaction together with its row in
// schema_migrations. It holds a session-level advisory lock meanwhile, so
// concurrent callers (replicas starting together) wait for each other and
// every migration runs once. Versions in the database that this binary
// does not know (a newer previewd migrated it) are left alone.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := migrations.All()
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return s.migrate(ctx, ms)
}

func (s *Store) migrate(ctx context.Context, ms []migrations.Migration) (err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrating: acquiring connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
		return fmt.Errorf("migrating: taking migration lock: %w", err)
	}
	defer func() {
		_, uerr := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockKey)
		if uerr != nil {
			// Do not hand a connection that may still hold the lock back to
			// the pool: closing the session releases it.
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
			if err == nil {
				err = fmt.Errorf("migrating: releasing migration lock: %w", uerr)
			}
		}
	}()

	_, err = conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`)
	if err != nil {
		return fmt.Errorf("migrating: creating schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return fmt.Errorf("migrating: reading applied versions: %w", err)
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("migrating: reading applied versions: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("migrating: reading applied versions: %w", err)
	}

	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return fmt.Errorf("migrating to %s: beginning transaction: %w", m.Name, err)
		}
		// Without arguments pgx uses the simple protocol, which runs a file
		// of several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return fmt.Errorf("migrating to %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`,
			m.Version, m.Name); err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
			return fmt.Errorf("migrating to %s: recording version: %w", m.Name, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("migrating to %s: committing: %w", m.Name, err)
		}
	}
	return nil
}
