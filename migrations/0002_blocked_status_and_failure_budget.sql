-- A preview blocked by a namespace previewd does not own is a status of its
-- own ('blocked'), no longer a failed preview recognised by its error text.
-- attempts now counts the failed attempts at desired_sha (the retry budget
-- used); cancelled attempts (a newer SHA, a shutdown, a crash) never counted
-- against the budget, and now they do not count here either.
ALTER TABLE previews DROP CONSTRAINT previews_status_check;
ALTER TABLE previews ADD CONSTRAINT previews_status_check
    CHECK (status IN ('pending', 'deploying', 'ready', 'failed', 'blocked', 'deleting', 'deleted'));

UPDATE previews SET status = 'blocked', next_attempt_at = NULL, attempts = 0
    WHERE status = 'failed' AND last_error LIKE '%is not managed by previewd%';

UPDATE previews p SET attempts = (
    SELECT count(*) FROM deploy_attempts a
    WHERE a.preview_id = p.id AND a.sha = p.desired_sha AND a.outcome = 'failed'
      AND a.started_at >= p.sha_first_seen_at)
    WHERE p.status = 'failed';
-- A preview that is not failed has used none of its budget.
UPDATE previews SET attempts = 0 WHERE status NOT IN ('failed', 'blocked');
