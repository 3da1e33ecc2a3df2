package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/previewd/previewd/reconcile/model"
)

const previewColumns = `repo, number, namespace, branch, title, desired_sha, deployed_sha, status,
	attempts, next_attempt_at, last_error, comment_id, comment_hash, sha_first_seen_at,
	deploy_started_at, ready_at, closed_at, created_at, updated_at, waiting_for, waiting_since, deployed_fingerprint, repo_id`

func scanPreview(row pgx.Row) (model.Preview, error) {
	var (
		p                            model.Preview
		status                       string
		next, started, ready, closed *time.Time
		waitingSince                 *time.Time
		commentID                    *int64
	)
	err := row.Scan(&p.Repo, &p.Number, &p.Namespace, &p.Branch, &p.Title, &p.DesiredSHA, &p.DeployedSHA, &status,
		&p.Attempts, &next, &p.LastError, &commentID, &p.CommentHash, &p.SHAFirstSeenAt,
		&started, &ready, &closed, &p.CreatedAt, &p.UpdatedAt, &p.WaitingFor, &waitingSince, &p.DeployedFingerprint, &p.RepoID)
	if err != nil {
		return model.Preview{}, err
	}
	p.Status = model.Status(status)
	p.NextAttemptAt = derefTime(next)
	p.DeployStartedAt = derefTime(started)
	p.ReadyAt = derefTime(ready)
	p.ClosedAt = derefTime(closed)
	p.WaitingSince = derefTime(waitingSince)
	if commentID != nil {
		p.CommentID = *commentID
	}
	return p, nil
}

// lockPreview reads the preview's row and locks it until the end of tx.
func lockPreview(ctx context.Context, tx pgx.Tx, key model.Key) (id int64, p model.Preview, err error) {
	row := tx.QueryRow(ctx, `SELECT id, `+previewColumns+` FROM previews
		WHERE repo = $1 AND number = $2 FOR UPDATE`, key.Repo, key.Number)
	p, err = scanPreview(idRow{row, &id})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, model.Preview{}, model.ErrNotFound
	}
	if err != nil {
		return 0, model.Preview{}, fmt.Errorf("reading preview: %w", err)
	}
	return id, p, nil
}

// save writes what a transition changed (every column a transition owns;
// not the comment, which SetComment keeps) and returns the row as stored.
func save(ctx context.Context, tx pgx.Tx, id int64, p model.Preview) (model.Preview, error) {
	saved, err := scanPreview(tx.QueryRow(ctx, `UPDATE previews SET namespace = $2, branch = $3, title = $4,
			desired_sha = $5, deployed_sha = $6, status = $7, attempts = $8, next_attempt_at = $9,
			last_error = $10, sha_first_seen_at = $11, deploy_started_at = $12, ready_at = $13,
			closed_at = $14, waiting_for = $15, waiting_since = $16, deployed_fingerprint = $17, updated_at = now()
		WHERE id = $1 RETURNING `+previewColumns,
		id, p.Namespace, p.Branch, p.Title, p.DesiredSHA, p.DeployedSHA, string(p.Status), p.Attempts,
		nullTime(p.NextAttemptAt), p.LastError, p.SHAFirstSeenAt, nullTime(p.DeployStartedAt),
		nullTime(p.ReadyAt), nullTime(p.ClosedAt), p.WaitingFor, nullTime(p.WaitingSince), p.DeployedFingerprint))
	if err != nil {
		return model.Preview{}, fmt.Errorf("writing preview: %w", err)
	}
	return saved, nil
}

// idRow scans a leading id column, then hands the rest to scanPreview.
type idRow struct {
	row pgx.Row
	id  *int64
}

func (r idRow) Scan(dest ...any) error { return r.row.Scan(append([]any{r.id}, dest...)...) }

// Get returns the preview of a PR. ok is false if previewd never saw it.
func (s *Store) Get(ctx context.Context, key model.Key) (p model.Preview, ok bool, err error) {
	p, err = scanPreview(s.pool.QueryRow(ctx, `SELECT `+previewColumns+` FROM previews
		WHERE repo = $1 AND number = $2`, key.Repo, key.Number))
	if errors.Is(err, pgx.ErrNoRows) {
		return model.Preview{}, false, nil
	}
	if err != nil {
		return model.Preview{}, false, fmt.Errorf("getting preview %s: %w", key, err)
	}
	return p, true, nil
}

// List returns every preview that is not deleted, by repository and
// number.
func (s *Store) List(ctx context.Context) ([]model.Preview, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+previewColumns+` FROM previews
		WHERE status <> 'deleted' ORDER BY repo, number`)
	if err != nil {
		return nil, fmt.Errorf("listing previews: %w", err)
	}
	defer rows.Close()
	var ps []model.Preview
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

// RecordOpen records that the PR is open (model.RecordOpen) and returns the
// preview as it is afterwards. Repeating an observation changes nothing.
func (s *Store) RecordOpen(ctx context.Context, key model.Key, o model.Open) (model.Preview, error) {
	var p model.Preview
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		id, cur, err := lockPreview(ctx, tx, key)
		exists := err == nil
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			return err
		}
		next, changed, err := model.RecordOpen(cur, exists, key, o)
		if err != nil || !changed {
			p = cur
			return err
		}
		if exists {
			p, err = save(ctx, tx, id, next)
			return err
		}
		p, err = scanPreview(tx.QueryRow(ctx, `INSERT INTO previews
				(repo, number, namespace, branch, title, desired_sha, status, sha_first_seen_at, repo_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (repo, number) DO NOTHING
			RETURNING `+previewColumns,
			key.Repo, key.Number, next.Namespace, next.Branch, next.Title, next.DesiredSHA, string(next.Status), next.SHAFirstSeenAt, next.RepoID))
		if errors.Is(err, pgx.ErrNoRows) {
			// Inserted by a concurrent writer since the lock attempt: that
			// row wins; this observation is applied to it next time.
			return fmt.Errorf("%w: inserted concurrently", model.ErrStale)
		}
		return err
	})
	if errors.Is(err, model.ErrStale) {
		// The concurrent insert committed: apply the observation to it.
		return s.RecordOpen(ctx, key, o)
	}
	if err != nil {
		return model.Preview{}, fmt.Errorf("observing %s: %w", key, err)
	}
	return p, nil
}

// RecordRepoID records GitHub's id of repo on its previews that do not
// carry it yet (or carry another: a repository deleted and created again
// under the same name). It returns how many were updated; 0 writes
// nothing.
func (s *Store) RecordRepoID(ctx context.Context, repo string, id int64) (int64, error) {
	if id <= 0 {
		return 0, fmt.Errorf("recording the id of %s: id %d is not a repository id", repo, id)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE previews SET repo_id = $2 WHERE repo = $1 AND repo_id <> $2`, repo, id)
	if err != nil {
		return 0, fmt.Errorf("recording the id of %s: %w", repo, err)
	}
	return tag.RowsAffected(), nil
}

// Rename moves the preview of from (a PR of a repository that was renamed
// or transferred) to repository to, with its attempts, comment and
// namespace: the same PR under its repository's new name. A deleted
// record left under the new key is removed first; a live one makes the
// rename fail with model.ErrStale (both names have a preview: the old one
// stays an orphan).
func (s *Store) Rename(ctx context.Context, from model.Key, to string) error {
	if to == "" || to == from.Repo {
		return fmt.Errorf("renaming %s: new repository %q is not another name", from, to)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		id, _, err := lockPreview(ctx, tx, from)
		if err != nil {
			return err
		}
		var status string
		err = tx.QueryRow(ctx, `SELECT status FROM previews WHERE repo = $1 AND number = $2 FOR UPDATE`,
			to, from.Number).Scan(&status)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case status != string(model.StatusDeleted):
			return fmt.Errorf("%w: %s#%d has a preview of its own", model.ErrStale, to, from.Number)
		default:
			if _, err := tx.Exec(ctx, `DELETE FROM previews WHERE repo = $1 AND number = $2`, to, from.Number); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `UPDATE previews SET repo = $2, updated_at = now() WHERE id = $1`, id, to)
		return err
	})
	if err != nil {
		return fmt.Errorf("renaming %s to %s#%d: %w", from, to, from.Number, err)
	}
	return nil
}

// transition applies a pure transition to the locked row of key and writes
// the result when it changed.
func (s *Store) transition(ctx context.Context, tx pgx.Tx, key model.Key,
	fn func(id int64, cur model.Preview) (model.Preview, bool, error)) error {
	id, cur, err := lockPreview(ctx, tx, key)
	if err != nil {
		return err
	}
	next, changed, err := fn(id, cur)
	if err != nil || !changed {
		return err
	}
	_, err = save(ctx, tx, id, next)
	return err
}

// StartAttempt records that a deploy of sha starts at now
// (model.StartAttempt) and returns its attempt number: 1 + the highest
// attempt number of this SHA for this PR (numbers are never reused, also
// when a SHA is desired again later). An attempt still open (a crashed or
// overtaken deploy) is closed as cancelled.
//
// It returns model.ErrStale if sha is not the desired SHA or the PR is
// being deleted, and model.ErrNotFound if the PR was never observed.
func (s *Store) StartAttempt(ctx context.Context, key model.Key, sha string, now time.Time) (int, error) {
	var attempt int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, key, func(id int64, cur model.Preview) (model.Preview, bool, error) {
			next, err := model.StartAttempt(cur, sha, now)
			if err != nil {
				return cur, false, err
			}
			err = tx.QueryRow(ctx, `SELECT coalesce(max(attempt), 0) + 1 FROM deploy_attempts
				WHERE preview_id = $1 AND sha = $2`, id, sha).Scan(&attempt)
			if err != nil {
				return cur, false, fmt.Errorf("numbering attempt: %w", err)
			}
			if err := closeOpenAttempts(ctx, tx, id, now, fmt.Sprintf("superseded by attempt %d of %s", attempt, sha)); err != nil {
				return cur, false, err
			}
			_, err = tx.Exec(ctx, `INSERT INTO deploy_attempts (preview_id, sha, attempt, started_at)
				VALUES ($1, $2, $3, $4)`, id, sha, attempt, now)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
				return cur, false, fmt.Errorf("attempt %d of %s already recorded: %w", attempt, sha, err)
			}
			if err != nil {
				return cur, false, fmt.Errorf("recording attempt: %w", err)
			}
			return next, true, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("starting deploy of %s at %s: %w", key, sha, err)
	}
	return attempt, nil
}

// FinishAttempt records how attempt number attempt of sha ended, at now,
// and applies model.FinishAttempt to the preview. The attempt is recorded
// even when the preview has moved on (model.ErrStale is returned then).
// Finishing an attempt that is already finished (also one closed as
// superseded by StartAttempt) returns model.ErrStale and changes nothing;
// an unknown attempt returns model.ErrNotFound.
func (s *Store) FinishAttempt(ctx context.Context, key model.Key, sha string, attempt int, f model.Finish, now time.Time) error {
	switch f.Outcome {
	case model.OutcomeReady, model.OutcomeFailed, model.OutcomeCancelled, model.OutcomeWaiting:
	default:
		return fmt.Errorf("finishing deploy of %s at %s: unknown outcome %q", key, sha, f.Outcome)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, key, func(id int64, cur model.Preview) (model.Preview, bool, error) {
			tag, err := tx.Exec(ctx, `UPDATE deploy_attempts SET finished_at = $4, outcome = $5, error = $6
				WHERE preview_id = $1 AND sha = $2 AND attempt = $3 AND finished_at IS NULL`,
				id, sha, attempt, now, string(f.Outcome), f.Error)
			if err != nil {
				return cur, false, fmt.Errorf("recording outcome: %w", err)
			}
			if tag.RowsAffected() == 0 {
				var exists bool
				err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM deploy_attempts
					WHERE preview_id = $1 AND sha = $2 AND attempt = $3)`, id, sha, attempt).Scan(&exists)
				if err != nil {
					return cur, false, fmt.Errorf("looking up attempt: %w", err)
				}
				if exists {
					return cur, false, fmt.Errorf("%w: attempt %d already finished", model.ErrStale, attempt)
				}
				return cur, false, fmt.Errorf("attempt %d: %w", attempt, model.ErrNotFound)
			}
			next, err := model.FinishAttempt(cur, sha, f, now)
			return next, err == nil, err
		})
	})
	if err != nil {
		return fmt.Errorf("finishing deploy %d of %s at %s: %w", attempt, key, sha, err)
	}
	return nil
}

// Hold records that the preview at sha waits before any attempt
// (model.Hold).
func (s *Store) Hold(ctx context.Context, key model.Key, sha, waitingFor, msg string, final bool, now time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, key, func(_ int64, cur model.Preview) (model.Preview, bool, error) {
			next, err := model.Hold(cur, sha, waitingFor, msg, final, now)
			return next, err == nil && next != cur, err
		})
	})
	if err != nil {
		return fmt.Errorf("recording the wait of %s: %w", key, err)
	}
	return nil
}

// Block records that the preview at sha is blocked by a namespace previewd
// does not own (model.Block).
func (s *Store) Block(ctx context.Context, key model.Key, sha, msg string) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, key, func(_ int64, cur model.Preview) (model.Preview, bool, error) {
			next, err := model.Block(cur, sha, msg)
			return next, err == nil && next != cur, err
		})
	})
	if err != nil {
		return fmt.Errorf("marking %s blocked: %w", key, err)
	}
	return nil
}

// MarkDeleting records that the PR was confirmed closed at now and its
// namespace is being deleted (model.MarkDeleting). A deploy still open is
// closed as cancelled.
func (s *Store) MarkDeleting(ctx context.Context, key model.Key, now time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, key, func(id int64, cur model.Preview) (model.Preview, bool, error) {
			next, changed := model.MarkDeleting(cur, now)
			if !changed {
				return cur, false, nil
			}
			return next, true, closeOpenAttempts(ctx, tx, id, now, "PR closed")
		})
	})
	if err != nil {
		return fmt.Errorf("marking %s deleting: %w", key, err)
	}
	return nil
}

// MarkDeleted records that the PR's namespace is gone (model.MarkDeleted).
func (s *Store) MarkDeleted(ctx context.Context, key model.Key, now time.Time) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		return s.transition(ctx, tx, key, func(id int64, cur model.Preview) (model.Preview, bool, error) {
			next, changed, err := model.MarkDeleted(cur)
			if err != nil || !changed {
				return cur, false, err
			}
			return next, true, closeOpenAttempts(ctx, tx, id, now, "namespace deleted")
		})
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
// outcome (for example: a namespace stuck terminating). The status does
// not change; "" clears the error.
func (s *Store) SetError(ctx context.Context, key model.Key, msg string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE previews SET last_error = $3, updated_at = now()
		WHERE repo = $1 AND number = $2`, key.Repo, key.Number, msg)
	if err == nil && tag.RowsAffected() == 0 {
		err = model.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("setting error of %s: %w", key, err)
	}
	return nil
}

// SetComment records the id of the PR comment previewd maintains (0:
// unknown, find it again) and the hash of the body last written to it.
func (s *Store) SetComment(ctx context.Context, key model.Key, commentID int64, hash string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE previews SET comment_id = nullif($3::bigint, 0), comment_hash = $4,
		updated_at = now() WHERE repo = $1 AND number = $2`, key.Repo, key.Number, commentID, hash)
	if err == nil && tag.RowsAffected() == 0 {
		err = model.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("setting comment of %s: %w", key, err)
	}
	return nil
}

// Attempts returns the deploy attempts of a PR, oldest first.
func (s *Store) Attempts(ctx context.Context, key model.Key) ([]model.Attempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT p.id, a.sha, a.attempt, a.started_at, a.finished_at, a.outcome, a.error
		FROM previews p LEFT JOIN deploy_attempts a ON a.preview_id = p.id
		WHERE p.repo = $1 AND p.number = $2
		ORDER BY a.id`, key.Repo, key.Number)
	if err != nil {
		return nil, fmt.Errorf("listing attempts of %s: %w", key, err)
	}
	defer rows.Close()
	found := false
	var as []model.Attempt
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
		a := model.Attempt{SHA: *sha, Attempt: *attempt, StartedAt: derefTime(started), FinishedAt: derefTime(finished), Error: *errMsg}
		if outcome != nil {
			a.Outcome = model.Outcome(*outcome)
		}
		as = append(as, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing attempts of %s: %w", key, err)
	}
	if !found {
		return nil, fmt.Errorf("listing attempts of %s: %w", key, model.ErrNotFound)
	}
	return as, nil
}

// Purge removes the records of previews deleted before before, with their
// deploy attempts (and the log excerpts these quote). It returns how many
// previews were removed.
func (s *Store) Purge(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM previews WHERE status = 'deleted' AND updated_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("purging deleted previews: %w", err)
	}
	return tag.RowsAffected(), nil
}
