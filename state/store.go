// Package state is previewd's memory in PostgreSQL: which pull requests it
// intends to preview at which SHA, the history of deploy attempts, the PR
// comment it keeps, and the HTTP cache of its GitHub reads.
//
// The store records intent and history; the cluster is the truth about what
// runs. Callers pass the time in (now): nothing here reads the clock except
// the created_at/updated_at bookkeeping, which uses the database's now().
// Every status change runs in a transaction that locks the PR's row and
// applies one of reconcile/model's pure transitions to it, so that a stale
// writer (an older deploy, a deletion overtaken by a reopen) loses with
// model.ErrStale instead of overwriting newer intent.
//
// PostgreSQL stores times with microsecond precision: times read back are
// truncated to the microsecond.
package state

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/previewd/previewd/reconcile/model"
)

// Store is previewd's state in PostgreSQL. It is safe for concurrent use,
// also by several processes on the same database.
type Store struct {
	pool *pgxpool.Pool
}

// pingAfterIdle: a pooled connection idle this long is pinged before use.
const pingAfterIdle = 10 * time.Millisecond

// Open connects to the database at url (a postgres:// URL or keyword/value
// string) and checks that it answers. It does not migrate: call Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors quote the URL, password included.
		return nil, errors.New("parsing database URL: invalid connection string")
	}
	// A peer that vanished (a partition, a dead node) is noticed in
	// seconds rather than hours: client-side keepalives, and the server's
	// for its side of each session (the leader lock's session above all),
	// unless the URL sets them.
	cfg.ConnConfig.DialFunc = (&net.Dialer{KeepAlive: 5 * time.Second, Timeout: 30 * time.Second}).DialContext
	// Set after connecting, not as startup parameters: a pooler such as
	// PgBouncer refuses unknown startup parameters, and PostgreSQL before
	// 12 has no tcp_user_timeout. A setting that fails is left as it is.
	var keepalives []string
	for _, kv := range [][2]string{{"tcp_keepalives_idle", "5"}, {"tcp_keepalives_interval", "2"},
		{"tcp_keepalives_count", "3"}, {"tcp_user_timeout", "10000"}} {
		if _, set := cfg.ConnConfig.RuntimeParams[kv[0]]; !set {
			keepalives = append(keepalives, "SET "+kv[0]+" = "+kv[1])
		}
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		for _, q := range keepalives {
			_, _ = c.Exec(ctx, q)
		}
		return nil
	}
	// A connection idle for a moment is pinged before it is used, so that
	// after PostgreSQL dropped every session (a restart, a failover) the
	// dead ones are replaced on acquire instead of failing one query (and
	// one cycle) each. pgx's default pings only after a second idle.
	cfg.ShouldPing = func(_ context.Context, p pgxpool.ShouldPingParams) bool { return p.IdleDuration >= pingAfterIdle }
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connecting to database: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes all connections. Calls in flight finish first.
func (s *Store) Close() { s.pool.Close() }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("pinging database: %w", err)
	}
	return nil
}

// inTx runs fn in a transaction, committing if it returns nil or an error
// that wraps model.ErrStale (the bookkeeping done before a stale write is
// detected, such as closing an attempt, is kept), and rolling back
// otherwise.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	ferr := fn(tx)
	if ferr != nil && !errors.Is(ferr, model.ErrStale) {
		return ferr
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return ferr
}

// nullTime maps the zero time to NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func derefTime(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
