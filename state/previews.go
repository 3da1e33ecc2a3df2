package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const previewColumns = `repo, number, namespace, branch, title, desired_sha, deployed_sha, status,
	attempts, next_attempt_at, last_error, comment_id, comment_hash, sha_first_seen_at,
	deploy_started_at, ready_at, closed_at, created_at, updated_at`

func scanPreview(row pgx.Row) (Preview, error) {
	var (
		p                            Preview
		status                       string
		next, started, ready, closed *time.Time
		commentID                    *int64
	)
	err := row.Scan(&p.Repo, &p.Number, &p.Namespace, &p.Branch, &p.Title, &p.DesiredSHA, &p.DeployedSHA, &status,
		&p.Attempts, &next, &p.LastError, &commentID, &p.CommentHash, &p.SHAFirstSeenAt,
		&started, &ready, &closed, &p.CreatedAt, &p.UpdatedAt)
	if err != nil {
		return Preview{}, err
	}
	p.Status = Status(status)
	p.NextAttemptAt = derefTime(next)
	p.DeployStartedAt = derefTime(started)
	p.ReadyAt = derefTime(ready)
	p.ClosedAt = derefTime(closed)
	if commentID != nil {
		p.CommentID = *commentID
	}
	return p, nil
}

// lockPreview reads the preview's row and locks it until the end of tx.
func lockPreview(ctx context.Context, tx pgx.Tx, key Key) (id int64, p Preview, err error) {
	row := tx.QueryRow(ctx, `SELECT id, `+previewColumns+` FROM previews
		WHERE repo = $1 AND number = $2 FOR UPDATE`, key.Repo, key.Number)
	p, err = scanPreview(idRow{row, &id})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, Preview{}, ErrNotFound
	}
	if err != nil {
		return 0, Preview{}, fmt.Errorf("reading preview: %w", err)
	}
	return id, p, nil
}

// idRow scans a leading id column, then hands the rest to scanPreview.
type idRow struct {
	row pgx.Row
	id  *int64
}

func (r idRow) Scan(dest ...any) error { return r.row.Scan(append([]any{r.id}, dest...)...) }

// Get returns the preview of a PR. ok is false if previewd never saw it.
func (s *Store) Get(ctx context.Context, key Key) (p Preview, ok bool, err error) {
	p, err = scanPreview(s.pool.QueryRow(ctx, `SELECT `+previewColumns+` FROM previews
		WHERE repo = $1 AND number = $2`, key.Repo, key.Number))
	if errors.Is(err, pgx.ErrNoRows) {
		return Preview{}, false, nil
	}
	if err != nil {
		return Preview{}, false, fmt.Errorf("getting preview %s: %w", key, err)
	}
	return p, true, nil
}

// List returns every preview that is not deleted, by repository and
// number.
func (s *Store) List(ctx context.Context) ([]Preview, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+previewColumns+` FROM previews
		WHERE status <> 'deleted' ORDER BY repo, number`)
	if err != nil {
		return nil, fmt.Errorf("listing previews: %w", err)
	}
	defer rows.Close()
	var ps []Preview
	for rows.Next() {
		p, err := scanPreview(rows)
		if err != nil {
			return nil, fmt.Errorf("listing previews: %w", err)
		}
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing previews: %w", err)
	}
	return ps, nil
}

// Observe records that the PR is open with head sha, as seen at now, and
// returns the preview as it is afterwards. Repeating an observation changes
// nothing.
//
//   - A PR seen for the first time becomes pending at sha, with
//     SHAFirstSeenAt = now.
//   - A new head SHA becomes desired: status pending (also from deploying:
//     the executor cancels the older deploy, whose FinishAttempt is then
//     stale), Attempts 0, no retry planned, LastError cleared,
//     SHAFirstSeenAt = now.
//   - A deleting or deleted preview whose PR is open again (reopened) is
//     revived: pending at sha, nothing deployed; a deleted one takes the new
//     namespace. An observation not later than ClosedAt does not revive:
//     the closing was seen after it.
//   - Otherwise only the branch and title are updated; the namespace of a
//     live preview never changes.
//
// An observation older than the one that set the current desired SHA
// (now before SHAFirstSeenAt) changes nothing and returns the current row.
func (s *Store) Observe(ctx context.Context, key Key, namespace, branch, title, sha string, now time.Time) (Preview, error) {
	if sha == "" {
		return Preview{}, fmt.Errorf("observing %s: empty SHA", key)
	}
	var p Preview
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		p, err = scanPreview(tx.QueryRow(ctx, `INSERT INTO previews
				(repo, number, namespace, branch, title, desired_sha, status, sha_first_seen_at)
			VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7)
			ON CONFLICT (repo, number) DO NOTHING
			RETURNING `+previewColumns,
			key.Repo, key.Number, namespace, branch, title, sha, now))
		if err == nil || !errors.Is(err, pgx.ErrNoRows) {
			return err // inserted, or failed
		}
		id, cur, err := lockPreview(ctx, tx, key)
		if err != nil {
			return err
		}
		var q string
		args := []any{id, branch, title}
		switch {
		case cur.Status == StatusDeleting || cur.Status == StatusDeleted:
			if !cur.ClosedAt.IsZero() && !now.After(cur.ClosedAt) {
				p = cur
				return nil
			}
			q = `UPDATE previews SET branch = $2, title = $3, desired_sha = $4, sha_first_seen_at = $5,
				namespace = CASE WHEN status = 'deleted' THEN $6 ELSE namespace END,
				status = 'pending', attempts = 0, next_attempt_at = NULL, last_error = '',
				deployed_sha = '', deploy_started_at = NULL, ready_at = NULL, closed_at = NULL,
				updated_at = now()
				WHERE id = $1`
			args = append(args, sha, now, namespace)
		case cur.DesiredSHA != sha:
			if now.Before(cur.SHAFirstSeenAt) {
				p = cur
				return nil
			}
			q = `UPDATE previews SET branch = $2, title = $3, desired_sha = $4, sha_first_seen_at = $5,
				status = 'pending', attempts = 0, next_attempt_at = NULL, last_error = '',
				updated_at = now()
				WHERE id = $1`
			args = append(args, sha, now)
		case cur.Branch != branch || cur.Title != title:
			q = `UPDATE previews SET branch = $2, title = $3, updated_at = now() WHERE id = $1`
		default:
			p = cur
			return nil
		}
		p, err = scanPreview(tx.QueryRow(ctx, q+` RETURNING `+previewColumns, args...))
		return err
	})
	if err != nil {
		return Preview{}, fmt.Errorf("observing %s: %w", key, err)
	}
	return p, nil
}

// StartAttempt records that a deploy of sha starts at now and returns its
// attempt number: 1 + the highest attempt number of this SHA for this PR
// (numbers are never reused, also when a SHA is desired again later). The
// preview becomes deploying, Attempts grows by one, and an attempt still
// open (a crashed or overtaken deploy) is closed as cancelled.
//
// It returns ErrStale if sha is not the desired SHA or the PR is being
// deleted, and ErrNotFound if the PR was never observed.
func (s *Store) StartAttempt(ctx context.Context, key Key, sha string, now time.Time) (int, error) {
	var attempt int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		id, cur, err := lockPreview(ctx, tx, key)
		if err != nil {
			return err
		}
		if cur.DesiredSHA != sha {
			return fmt.Errorf("%w: desired SHA is %s", ErrStale, cur.DesiredSHA)
		}
		if cur.Status == StatusDeleting || cur.Status == StatusDeleted {
			return fmt.Errorf("%w: preview is %s", ErrStale, cur.Status)
		}
		err = tx.QueryRow(ctx, `SELECT coalesce(max(attempt), 0) + 1 FROM deploy_attempts
			WHERE preview_id = $1 AND sha = $2`, id, sha).Scan(&attempt)
		if err != nil {
			return fmt.Errorf("numbering attempt: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE deploy_attempts SET finished_at = $2, outcome = 'cancelled', error = $3
			WHERE preview_id = $1 AND finished_at IS NULL`,
			id, now, fmt.Sprintf("superseded by attempt %d of %s", attempt, sha))
		if err != nil {
			return fmt.Errorf("closing open attempts: %w", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO deploy_attempts (preview_id, sha, attempt, started_at)
			VALUES ($1, $2, $3, $4)`, id, sha, attempt, now)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
			return fmt.Errorf("attempt %d of %s already recorded: %w", attempt, sha, err)
		}
		if err != nil {
			return fmt.Errorf("recording attempt: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE previews SET status = 'deploying', attempts = attempts + 1,
			deploy_started_at = $2, next_attempt_at = NULL, updated_at = now()
			WHERE id = $1`, id, now)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("starting deploy of %s at %s: %w", key, sha, err)
	}
	return attempt, nil
}

// FinishAttempt records how attempt number attempt of sha ended, at now.
//
// If sha is still desired and the preview is deploying, the preview follows
// the outcome: ready → deployed at sha, ReadyAt = now, LastError cleared;
// failed → LastError = errMsg and a retry at nextAttemptAt (zero: no
// retry); cancelled → pending again.
//
// Otherwise (a newer SHA is desired, the PR is being deleted) only the
// attempt is recorded and ErrStale is returned: the caller's result no
// longer matters to the preview. Finishing an attempt that is already
// finished (also one closed as superseded by StartAttempt) returns ErrStale
// and changes nothing; an unknown attempt returns ErrNotFound.
func (s *Store) FinishAttempt(ctx context.Context, key Key, sha string, attempt int, outcome Outcome,
	errMsg string, now, nextAttemptAt time.Time) error {
	switch outcome {
	case OutcomeReady, OutcomeFailed, OutcomeCancelled:
	default:
		return fmt.Errorf("finishing deploy of %s at %s: unknown outcome %q", key, sha, outcome)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		id, cur, err := lockPreview(ctx, tx, key)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE deploy_attempts SET finished_at = $4, outcome = $5, error = $6
			WHERE preview_id = $1 AND sha = $2 AND attempt = $3 AND finished_at IS NULL`,
			id, sha, attempt, now, string(outcome), errMsg)
		if err != nil {
			return fmt.Errorf("recording outcome: %w", err)
		}
		if tag.RowsAffected() == 0 {
			var exists bool
			err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deploy_attempts
				WHERE preview_id = $1 AND sha = $2 AND attempt = $3)`, id, sha, attempt).Scan(&exists)
			if err != nil {
				return fmt.Errorf("looking up attempt: %w", err)
			}
			if exists {
				return fmt.Errorf("%w: attempt %d already finished", ErrStale, attempt)
			}
			return fmt.Errorf("attempt %d: %w", attempt, ErrNotFound)
		}
		if cur.DesiredSHA != sha {
			return fmt.Errorf("%w: desired SHA is now %s", ErrStale, cur.DesiredSHA)
		}
		if cur.Status != StatusDeploying {
			return fmt.Errorf("%w: preview is %s", ErrStale, cur.Status)
		}
		switch outcome {
		case OutcomeReady:
			_, err = tx.Exec(ctx, `UPDATE previews SET status = 'ready', deployed_sha = $2, ready_at = $3,
				last_error = '', next_attempt_at = NULL, updated_at = now() WHERE id = $1`, id, sha, now)
		case OutcomeFailed:
			_, err = tx.Exec(ctx, `UPDATE previews SET status = 'failed', last_error = $2, next_attempt_at = $3,
				updated_at = now() WHERE id = $1`, id, errMsg, nullTime(nextAttemptAt))
		case OutcomeCancelled:
			_, err = tx.Exec(ctx, `UPDATE previews SET status = 'pending', next_attempt_at = NULL,
				updated_at = now() WHERE id = $1`, id)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("finishing deploy %d of %s at %s: %w", attempt, key, sha, err)
	}
	return nil
}

// MarkDeleting records that the PR was confirmed closed at now and its
// namespace is being deleted. A deploy still open is closed as cancelled.
// Marking a preview that is already deleting changes nothing; a deleted
// one becomes deleting again (its namespace was found again).
func (s *Store) MarkDeleting(ctx context.Context, key Key, now time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		id, cur, err := lockPreview(ctx, tx, key)
		if err != nil {
			return err
		}
		if cur.Status == StatusDeleting {
			return nil
		}
		if err := closeOpenAttempts(ctx, tx, id, now, "PR closed"); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE previews SET status = 'deleting', next_attempt_at = NULL,
			closed_at = coalesce(closed_at, $2), updated_at = now() WHERE id = $1`, id, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("marking %s deleting: %w", key, err)
	}
	return nil
}

// MarkDeleted records that the PR's namespace is gone: nothing is deployed
// any more. It returns ErrStale unless the preview is deleting (it was
// reopened meanwhile) or already deleted (then it changes nothing).
func (s *Store) MarkDeleted(ctx context.Context, key Key, now time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		id, cur, err := lockPreview(ctx, tx, key)
		if err != nil {
			return err
		}
		switch cur.Status {
		case StatusDeleted:
			return nil
		case StatusDeleting:
		default:
			return fmt.Errorf("%w: preview is %s", ErrStale, cur.Status)
		}
		if err := closeOpenAttempts(ctx, tx, id, now, "namespace deleted"); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE previews SET status = 'deleted', deployed_sha = '', ready_at = NULL,
			next_attempt_at = NULL, updated_at = now() WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("marking %s deleted: %w", key, err)
	}
	return nil
}

func closeOpenAttempts(ctx context.Context, tx pgx.Tx, previewID int64, now time.Time, why string) error {
	_, err := tx.Exec(ctx, `UPDATE deploy_attempts SET finished_at = $2, outcome = 'cancelled', error = $3
		WHERE preview_id = $1 AND finished_at IS NULL`, previewID, now, why)
	if err != nil {
		return fmt.Errorf("closing open attempts: %w", err)
	}
	return nil
}

// SetError records an error to report on the PR that is not a deploy
// outcome (for example: the namespace exists and previewd does not own
// it). The status does not change; "" clears the error.
func (s *Store) SetError(ctx context.Context, key Key, msg string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE previews SET last_error = $3, updated_at = now()
		WHERE repo = $1 AND number = $2`, key.Repo, key.Number, msg)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("setting error of %s: %w", key, err)
	}
	return nil
}

// SetComment records the id of the PR comment previewd maintains (0:
// unknown, find it again) and the hash of the body last written to it.
func (s *Store) SetComment(ctx context.Context, key Key, commentID int64, hash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE previews SET comment_id = nullif($3::bigint, 0), comment_hash = $4,
		updated_at = now() WHERE repo = $1 AND number = $2`, key.Repo, key.Number, commentID, hash)
	if err == nil && tag.RowsAffected() == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("setting comment of %s: %w", key, err)
	}
	return nil
}

// Attempts returns the deploy attempts of a PR, oldest first.
func (s *Store) Attempts(ctx context.Context, key Key) ([]Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT p.id, a.sha, a.attempt, a.started_at, a.finished_at, a.outcome, a.error
		FROM previews p LEFT JOIN deploy_attempts a ON a.preview_id = p.id
		WHERE p.repo = $1 AND p.number = $2
		ORDER BY a.id`, key.Repo, key.Number)
	if err != nil {
		return nil, fmt.Errorf("listing attempts of %s: %w", key, err)
	}
	defer rows.Close()
	found := false
	var as []Attempt
	for rows.Next() {
		found = true
		var (
			previewID   int64
			sha, errMsg *string
			attempt     *int
			started     *time.Time
			finished    *time.Time
			outcome     *string
		)
		if err := rows.Scan(&previewID, &sha, &attempt, &started, &finished, &outcome, &errMsg); err != nil {
			return nil, fmt.Errorf("listing attempts of %s: %w", key, err)
		}
		if sha == nil { // the preview has no attempts
			continue
		}
		a := Attempt{SHA: *sha, Attempt: *attempt, StartedAt: derefTime(started), FinishedAt: derefTime(finished), Error: *errMsg}
		if outcome != nil {
			a.Outcome = Outcome(*outcome)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing attempts of %s: %w", key, err)
	}
	if !found {
		return nil, fmt.Errorf("listing attempts of %s: %w", key, ErrNotFound)
	}
	return as, nil
}
