-- A preview can wait for something outside previewd (the image CI has not
-- pushed yet): status 'waiting', what it waits for and since when. An
-- attempt that found the image missing ends 'waiting', not 'failed': it
-- uses none of the retry budget.
ALTER TABLE previews ADD COLUMN waiting_for text NOT NULL DEFAULT '';
ALTER TABLE previews ADD COLUMN waiting_since timestamptz;
ALTER TABLE previews DROP CONSTRAINT previews_status_check;
ALTER TABLE previews ADD CONSTRAINT previews_status_check
    CHECK (status IN ('pending', 'deploying', 'waiting', 'ready', 'failed', 'blocked', 'deleting', 'deleted'));
ALTER TABLE deploy_attempts DROP CONSTRAINT deploy_attempts_outcome_check;
ALTER TABLE deploy_attempts ADD CONSTRAINT deploy_attempts_outcome_check
    CHECK (outcome IN ('ready', 'failed', 'cancelled', 'waiting'));
