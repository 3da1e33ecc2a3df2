// Package state is previewd's memory in PostgreSQL: which pull requests it
// intends to preview at which SHA, the history of deploy attempts, the PR
// comment it keeps, and the HTTP cache of its GitHub reads.
//
// The store records intent and history; the cluster is the truth about what
// runs. Callers pass the time in (now): nothing here reads the clock except
// the created_at/updated_at bookkeeping, which uses the database's now().
// Every status change runs in a transaction that locks the PR's row and
// checks the expected state first, so that a stale writer (an older deploy,
// a deletion overtaken by a reopen) loses with ErrStale instead of
// overwriting newer intent.
//
// PostgreSQL stores times with microsecond precision: times read back are
// truncated to the microsecond.
package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Sentinel errors, returned wrapped: test them with errors.Is.
var (
	// ErrNotFound: no preview (or attempt) with that key.
	ErrNotFound = errors.New("not found")
	// ErrStale: the write was based on state that has moved on (a newer SHA
	// is desired, the PR is being deleted, a newer attempt started, the
	// attempt was already finished). The row was left as it was.
	ErrStale = errors.New("stale write")
)

// Status is where a preview is in its life.
type Status string

// Statuses. Pending: wants a deploy of DesiredSHA. Deploying: an attempt
// is in flight. Ready: DesiredSHA is deployed. Failed: the last attempt
// failed; NextAttemptAt says when to retry (zero: do not). Deleting: the
// PR is closed and its namespace is going. Deleted: the namespace is gone.
const (
	StatusPending   Status = "pending"
	StatusDeploying Status = "deploying"
	StatusReady     Status = "ready"
	StatusFailed    Status = "failed"
	StatusDeleting  Status = "deleting"
	StatusDeleted   Status = "deleted"
)

// Outcome is how a deploy attempt ended.
type Outcome string

// Outcomes.
const (
	OutcomeReady     Outcome = "ready"
	OutcomeFailed    Outcome = "failed"
	OutcomeCancelled Outcome = "cancelled"
)

// Key names a pull request.
type Key struct {
	Repo   string // owner/name
	Number int
}

func (k Key) String() string { return fmt.Sprintf("%s#%d", k.Repo, k.Number) }

// Preview is previewd's memory of one pull request. Zero times mean "not
// set".
type Preview struct {
	Repo        string
	Number      int
	Namespace   string
	Branch      string
	Title       string
	DesiredSHA  string // head SHA of the open PR
	DeployedSHA string // SHA of the last successful deploy; "" after deletion
	Status      Status
	// Attempts counts deploy attempts since DesiredSHA was first seen (or
	// the PR was reopened).
	Attempts      int
	NextAttemptAt time.Time // zero: no retry planned
	LastError     string
	CommentID     int64 // 0: unknown
	CommentHash   string
	// SHAFirstSeenAt is when DesiredSHA was first observed: deploy latency
	// is ReadyAt - SHAFirstSeenAt.
	SHAFirstSeenAt  time.Time
	DeployStartedAt time.Time
	ReadyAt         time.Time
	// ClosedAt is when the PR was confirmed closed (MarkDeleting); zero
	// while it is open.
	ClosedAt  time.Time
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Key returns the preview's key.
func (p Preview) Key() Key { return Key{Repo: p.Repo, Number: p.Number} }

// Attempt is one deploy attempt.
type Attempt struct {
	SHA        string
	Attempt    int // 1, 2, ... per (PR, SHA); never reused
	StartedAt  time.Time
	FinishedAt time.Time // zero while in flight
	Outcome    Outcome   // "" while in flight
	Error      string
}

// Store is previewd's state in PostgreSQL. It is safe for concurrent use,
// also by several processes on the same database.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url (a postgres:// URL or keyword/value
// string) and checks that it answers. It does not migrate: call Migrate.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors quote the URL, password included.
		return nil, errors.New("parsing database URL: invalid connection string")
	}
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
// that wraps ErrStale (the bookkeeping done before a stale write is
// detected, such as closing an attempt, is kept), and rolling back
// otherwise.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after commit
	ferr := fn(tx)
	if ferr != nil && !errors.Is(ferr, ErrStale) {
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
